"""The model on disk and its life: the BentoML model store and the model card (`store`).

May import: agbento.core, agbento.rows.
"""
