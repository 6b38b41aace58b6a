"""agbento: AutoGluon tabular models in production on BentoML."""

__version__ = "0.1.0"
