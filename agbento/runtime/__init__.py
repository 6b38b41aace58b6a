"""The model in a process: load, verify, warm up and score (`inference`), merge
concurrent requests (`batching`), the prediction cache (`cache`), the two ways to reach the
model (`scoring`: in-process or the model service), and the endpoint's contract around them:
accept rows, place and render answers (`contract`); explanations beside the predictor,
placed and rendered (`explaining`).

May import: agbento.core, agbento.rows, agbento.models, agbento.monitoring, agbento.explain.
"""
