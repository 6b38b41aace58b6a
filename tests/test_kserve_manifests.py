"""deploy/k8s/kserve against KServe's own CRD schemas, and in step with deploy/k8s/base.

tests/data/kserve/kserve-crds.json holds the openAPIV3Schema of KServe's InferenceService and
ServingRuntime CRDs (made by vendor_crds.py from kserve's config/crd/full). The API server
would also refuse fields the schema does not name (kubectl's strict field validation), so the
test does too.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
KSERVE = DEPLOY / "kserve"
CRDS = Path(__file__).resolve().parent / "data" / "kserve" / "kserve-crds.json"


def strict(node: Any) -> Any:
    """Unknown fields are errors wherever the schema lists the fields (as kubectl --validate
    =strict): structural schemas otherwise prune them silently."""
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft202012Validator]:
    schemas = json.loads(CRDS.read_text())["schemas"]
    return {key: Draft202012Validator(strict(schema)) for key, schema in schemas.items()}


def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((KSERVE / "kustomization.yaml").read_text())
    return [yaml.safe_load((KSERVE / name).read_text()) for name in kustomization["resources"]]


def problems(validators: dict[str, Draft202012Validator], doc: dict[str, Any]) -> list[str]:
    validator = validators[f"{doc['apiVersion']}/{doc['kind']}"]
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]


def by_kind(kind: str) -> dict[str, Any]:
    return next(doc for doc in manifests() if doc["kind"] == kind)


def test_manifests_validate_against_kserve_crds(
        validators: dict[str, Draft202012Validator]) -> None:
    docs = manifests()
    assert {doc["kind"] for doc in docs} == {"ServingRuntime", "InferenceService"}
    for doc in docs:
        assert problems(validators, doc) == [], doc["kind"]


@pytest.mark.parametrize(("kind", "path", "value"), [
    ("InferenceService", ("spec", "predictor", "model", "protocolVerison"), "v2"),
    ("InferenceService", ("spec", "predictor", "minReplicas"), "two"),
    ("ServingRuntime", ("spec", "containers", 0, "resources", "requests", "cpu"), [1]),
    ("ServingRuntime", ("spec", "multiModel"), "no"),
])
def test_the_schemas_catch_mistakes(validators: dict[str, Draft202012Validator], kind: str,
                                    path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(by_kind(kind))
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    assert problems(validators, doc)


def test_runtime_matches_the_service_and_the_base_deployment() -> None:
    runtime, isvc = by_kind("ServingRuntime"), by_kind("InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2" and "v2" in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {f["name"] for f in
                                            runtime["spec"]["supportedModelFormats"]}
    (container,) = runtime["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AGBENTO_REQUIRE_API_KEYS"] == "true"
    assert env["AGBENTO_SERVED_MODEL_NAME"] == "{{.Name}}"
    assert env["AGBENTO_TOPOLOGY"] == "fused"
    assert int(env["AGBENTO_API_WORKERS"]) == int(container["resources"]["requests"]["cpu"])
    args = container["args"]
    port = int(args[args.index("--port") + 1])
    assert container["ports"][0]["containerPort"] == port

    base = yaml.safe_load((DEPLOY / "base" / "deployment.yaml").read_text())
    base_pod = base["spec"]["template"]["spec"]
    (base_container,) = base_pod["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        ours, theirs = container[probe], base_container[probe]
        assert ours["httpGet"]["path"] == theirs["httpGet"]["path"]
        assert ours["httpGet"]["port"] == port
        assert {k: v for k, v in ours.items() if k != "httpGet"} == {
            k: v for k, v in theirs.items() if k != "httpGet"}
    assert container["resources"] == base_container["resources"] == model["resources"]
    assert container["lifecycle"] == base_container["lifecycle"]
    grace = isvc["spec"]["predictor"]["terminationGracePeriodSeconds"]
    assert grace == base_pod["terminationGracePeriodSeconds"]
    assert int(args[args.index("--timeout-graceful-shutdown") + 1]) + 5 < grace
    keys = next(v for v in runtime["spec"]["volumes"] if v["name"] == "api-keys")
    base_keys = next(v for v in base_pod["volumes"] if v["name"] == "api-keys")
    assert keys == base_keys
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        m["mountPath"] for m in base_container["volumeMounts"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
