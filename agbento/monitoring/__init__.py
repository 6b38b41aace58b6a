"""Watching the model: Prometheus metrics (`metrics`), the sampled prediction log
(`prediction_log`), the training rows' reference distributions and PSI (`reference`), live
drift counters (`drift`) and live quality from labelled rows (`quality`).

May import: agbento.core, agbento.rows, agbento.models.
"""
