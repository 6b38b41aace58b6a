"""agbento: AutoGluon tabular models in production on BentoML.

The packages, bottom floor first; each may import only the floors below it (its
`__init__` says which, and tests/test_layout.py holds every import to it):

    core        settings, errors, logging, the HTTP vocabulary
    rows        the feature schema, row validation, body limits, columns
    models      the model store and the model card; stages (promote, roll back)
    monitoring  metrics, the prediction log, drift, live quality
    explain     per-row feature contributions
    runtime     load, warm up, batch, cache and score; the endpoints' contract
    training    fit, gate, shrink, store
    http        the ASGI layers in front of the endpoints and the route table
    protocols   Open Inference Protocol V2 and KServe V1
    offline     the batch client and Spark scoring
    ops         a serving process's life: bootstrap, drain, supervision (core only)
    cli         the `agbento` command (the top floor)

`service.py` (the Bento) wires them. `python -m agbento.batch|keys|spark|drift` and
`python -m agbento.models` are the same commands as `agbento batch|keys|...`.
"""

__version__ = "0.1.0"
