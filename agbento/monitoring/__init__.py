"""Watching the model: Prometheus metrics (`metrics`) and the sampled prediction log
(`prediction_log`).

May import: agbento.core, agbento.rows, agbento.models.
"""
