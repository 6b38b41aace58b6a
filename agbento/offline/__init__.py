"""Offline scoring: files of any size against a running service or in-process
(`batch`, `scorers`), and Spark DataFrames with the same stored model (`spark`).

May import: agbento.core, agbento.rows, agbento.models, agbento.monitoring, agbento.runtime.
"""
