"""How fast agbento.explain answers, in process (the server adds its HTTP and batching).

    python loadtests/explain_speed.py [--home DIR] [--out results.json]

Trains (once, into DIR's BentoML store: a temp dir by default) the demo model
(`train.py --demo --name agbento-demo`), the birdstrikes model (`--dataset birdstrikes`)
and a binary penguins model (label sex), then for each: one-row p50 and 1,000-row rows/s
of the exact method, its largest additivity error against `predict_proba` on those 1,000
rows, and the model-agnostic method's cost on the same model. With shap installed
(`pip install -e '.[bench]'`), also shap's interventional TreeExplainer in probability
space on the binary model (the option shap offers; it has no softmax output), for speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = {  # name -> train.py arguments (None: trained below, LightGBM alone)
    "agbento-demo": ["--demo", "--name", "agbento-demo"],
    "agbento-birdstrikes": ["--dataset", "birdstrikes"],
    "agbento-sex": None,
}


def timed(call: Any, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def rows_of(card: Any, n: int, seed: int) -> Any:
    from agbento.rows.schema import json_records
    from agbento.training.pipeline import birdstrikes_table, demo_table

    table = birdstrikes_table() if "birdstrikes" in card.tag else demo_table()
    table = table.drop(columns=card.metadata["label"])
    records = json_records(table.sample(n=n, replace=True, random_state=seed))
    return card.schema.to_frame(card.schema.validate_rows(records).rows)


def measure(name: str, agnostic_rows: int) -> dict[str, Any]:
    import bentoml
    import numpy as np

    from agbento.explain import Explainer
    from agbento.models.store import ModelCard
    from agbento.runtime.inference import TabularRuntime

    card = ModelCard.of(bentoml.models.get(f"{name}:latest"))
    runtime = TabularRuntime.load(card)
    start = time.perf_counter()
    explainer = Explainer.load(runtime.predictor, card)
    load_s = time.perf_counter() - start
    frame = rows_of(card, 1000, seed=1)
    explained = explainer.explain(frame)
    _, proba = runtime.predict_frame(frame)
    columns = [proba.columns.get_loc(c) for c in explained.explained_class]
    expected = proba.to_numpy()[np.arange(len(frame)), columns]
    singles = [frame.iloc[[i]] for i in range(60)]
    one = [t for i, row in enumerate(singles) for t in timed(lambda r=row: explainer.explain(r), 1)
           if i >= 10]  # the first calls warm caches
    thousand = timed(lambda: explainer.explain(frame), 5)
    predict_one = timed(lambda: runtime.predict_frame(singles[0]), 30)[5:]
    predict_thousand = timed(lambda: runtime.predict_frame(frame), 5)
    result: dict[str, Any] = {
        "model": card.tag, "method": explainer.method,
        "models": card.metadata.get("models"),
        "load_s": round(load_s, 3),
        "one_row_p50_ms": round(statistics.median(one) * 1000, 2),
        "one_row_p95_ms": round(float(np.percentile(one, 95)) * 1000, 2),
        "rows_per_s_1000": round(1000 / statistics.median(thousand)),
        "predict_one_row_p50_ms": round(statistics.median(predict_one) * 1000, 2),
        "predict_rows_per_s_1000": round(1000 / statistics.median(predict_thousand)),
        "max_additivity_error": float(np.abs(explained.output - expected).max()),
        "largest_quadrature_residual": explainer.largest_quadrature_residual,
    }
    agnostic = Explainer.load(runtime.predictor, card, method="agnostic")
    block = frame.iloc[:agnostic_rows]
    one_agnostic = timed(lambda: agnostic.explain(frame.iloc[[0]]), 5)
    many_agnostic = timed(lambda: agnostic.explain(block), 1)
    found = agnostic.explain(block)
    result["agnostic"] = {
        "method": agnostic.method, "background_rows": len(agnostic._agnostic_background),
        "permutations": agnostic.permutations,
        "one_row_p50_ms": round(statistics.median(one_agnostic) * 1000, 1),
        f"rows_per_s_{agnostic_rows}": round(agnostic_rows / many_agnostic[0], 1),
        "max_additivity_error": float(np.abs(found.output - expected[:agnostic_rows]).max()),
    }
    if name == "agbento-sex":
        result["shap_interventional_probability"] = shap_option(runtime, explainer, frame)
    return result


def shap_option(runtime: Any, explainer: Any, frame: Any) -> dict[str, Any] | str:
    """shap's TreeExplainer, interventional, model_output="probability", against the stored
    background, on the binary model's single LightGBM (its ensemble's only member)."""
    try:
        import shap
    except ImportError:
        return "shap not installed"
    import numpy as np

    leaves = explainer._leaves
    if len(leaves) != 1 or leaves[0][1].kind != "lightgbm":
        return "not a single LightGBM"
    leaf = leaves[0][1].model
    learner = runtime.predictor._learner

    def prepared(rows: Any) -> Any:
        return leaf.preprocess(learner.transform_features(rows))

    data = prepared(explainer.background)
    tree = shap.TreeExplainer(leaf.model, data=data, feature_perturbation="interventional",
                              model_output="probability")
    X = prepared(frame)
    one = timed(lambda: tree.shap_values(X.iloc[[0]], check_additivity=False), 10)[2:]
    many = timed(lambda: tree.shap_values(X, check_additivity=False), 1)
    values = np.asarray(tree.shap_values(X, check_additivity=False))
    positive = float(np.asarray(tree.expected_value).ravel()[-1])
    summed = positive + values.reshape(len(X), -1).sum(axis=1)
    _, proba = runtime.predict_frame(frame)
    expected = proba[str(runtime.predictor.positive_class)].to_numpy()
    return {"shap": shap.__version__, "background_rows": len(data),
            "one_row_p50_ms": round(statistics.median(one) * 1000, 2),
            "rows_per_s_1000": round(1000 / many[0]),
            "max_additivity_error": float(np.abs(summed - expected).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="BENTOML_HOME (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--agnostic-rows", type=int, default=20)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="agbento-explain-speed-"))
    os.environ["BENTOML_HOME"] = str(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    import subprocess

    import bentoml

    for name in args.models:
        train_args = MODELS[name]
        try:
            bentoml.models.get(f"{name}:latest")
        except bentoml.exceptions.NotFound:
            if train_args is None:  # shap's option needs a lone LightGBM: binary penguins
                from agbento.training.pipeline import TrainConfig, train

                train(TrainConfig(label="sex", demo=True, name=name,
                                  hyperparameters={"GBM": {}}), lambda _m: None)
                continue
            subprocess.run([sys.executable, str(ROOT / "train.py"), *train_args], check=True,
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           stdout=subprocess.DEVNULL)
    figures = {name: measure(name, args.agnostic_rows) for name in args.models}
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
