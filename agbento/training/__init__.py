"""Training: read a table, fit with deployment-minded settings, gate, shrink and store
(`pipeline`).

May import: agbento.core, agbento.rows, agbento.models, agbento.monitoring, agbento.runtime.
"""
