"""Make kserve-crds.json: the OpenAPI schemas of KServe's InferenceService and ServingRuntime.

    cd tests/data/kserve && python vendor_crds.py KSERVE_CHECKOUT COMMIT > kserve-crds.json

Reads config/crd/full/serving.kserve.io_{inferenceservices,servingruntimes}.yaml of a kserve
checkout and keeps only each served version's `openAPIV3Schema`, without descriptions, with
every repeated subtree (the pod and container specs appear dozens of times) stored once under
`$defs` and referenced: the same validation in a fraction of the size.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

CRDS = {"InferenceService": "serving.kserve.io_inferenceservices.yaml",
        "ServingRuntime": "serving.kserve.io_servingruntimes.yaml"}
MIN_SHARED_CHARS = 400  # smaller repeated subtrees cost less inline than as a $ref


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def canonical(node: Any) -> str:
    return json.dumps(node, sort_keys=True, separators=(",", ":"))


SCHEMA_MAPS = ("properties", "patternProperties")  # name -> subschema
SCHEMA_VALUES = ("items", "additionalProperties", "not")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def subschemas(schema: dict[str, Any]) -> list[tuple[str, str | int | None, Any]]:
    """(keyword, name or index, subschema) for every subschema directly under `schema`."""
    found: list[tuple[str, str | int | None, Any]] = []
    for keyword, value in schema.items():
        if keyword in SCHEMA_MAPS and isinstance(value, dict):
            found += [(keyword, name, sub) for name, sub in value.items()]
        elif keyword in SCHEMA_VALUES and isinstance(value, dict):
            found.append((keyword, None, value))
        elif keyword in SCHEMA_LISTS and isinstance(value, list):
            found += [(keyword, i, sub) for i, sub in enumerate(value)]
    return found


def share_repeats(root: dict[str, Any]) -> dict[str, Any]:
    counts: Counter[str] = Counter()

    def count(schema: dict[str, Any]) -> None:
        counts[canonical(schema)] += 1
        for _, _, sub in subschemas(schema):
            count(sub)

    count(root)
    defs: dict[str, Any] = {}

    def rebuilt(schema: dict[str, Any]) -> dict[str, Any]:
        out = dict(schema)
        for keyword, key, sub in subschemas(schema):
            if key is None:
                out[keyword] = shared(sub)
            elif isinstance(key, int):
                out[keyword] = [*out[keyword]]
                out[keyword][key] = shared(sub)
            else:
                out[keyword] = {**out[keyword], key: shared(sub)}
        return out

    def shared(schema: dict[str, Any]) -> dict[str, Any]:
        text = canonical(schema)
        if counts[text] < 2 or len(text) < MIN_SHARED_CHARS:
            return rebuilt(schema)
        name = hashlib.sha256(text.encode()).hexdigest()[:12]
        if name not in defs:
            defs[name] = rebuilt(schema)
        return {"$ref": f"#/$defs/{name}"}

    return {**rebuilt(root), "$defs": defs}


def main(checkout: Path, commit: str) -> None:
    kinds = {}
    for kind, name in CRDS.items():
        crd = yaml.safe_load((checkout / "config" / "crd" / "full" / name).read_text())
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = without_descriptions(version["schema"]["openAPIV3Schema"])
                api_version = f"{crd['spec']['group']}/{version['name']}"
                kinds[f"{api_version}/{kind}"] = share_repeats(schema)
    document = {"source": f"kserve/kserve@{commit} config/crd/full", "schemas": kinds}
    json.dump(document, sys.stdout, separators=(",", ":"), sort_keys=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
