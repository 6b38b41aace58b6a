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


def share_repeats(root: dict[str, Any]) -> dict[str, Any]:
    counts: Counter[str] = Counter()

    def count(node: Any) -> None:
        if isinstance(node, dict):
            counts[canonical(node)] += 1
            for value in node.values():
                count(value)
        elif isinstance(node, list):
            for value in node:
                count(value)

    count(root)
    defs: dict[str, Any] = {}

    def replace(node: Any, top: bool = False) -> Any:
        if isinstance(node, dict):
            text = canonical(node)
            if not top and counts[text] > 1 and len(text) >= MIN_SHARED_CHARS:
                name = hashlib.sha256(text.encode()).hexdigest()[:12]
                if name not in defs:
                    defs[name] = None  # reserve before recursing (no cycles in CRDs)
                    defs[name] = {k: replace(v) for k, v in node.items()}
                return {"$ref": f"#/$defs/{name}"}
            return {k: replace(v) for k, v in node.items()}
        if isinstance(node, list):
            return [replace(v) for v in node]
        return node

    shared = replace(root, top=True)
    return {**shared, "$defs": defs}


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
