"""Rows and bodies: the feature schema and row validation (`schema`), the limits checked
before anything is decoded (`bounds`), tables decoded straight into columns (`columns`), and
the answers' OpenAPI models (`response_models`).

May import: agbento.core.
"""
