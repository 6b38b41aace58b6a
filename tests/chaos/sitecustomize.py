"""Fault injection for a real `bentoml serve`, from the tests only.

Put this directory on the server's PYTHONPATH: Python imports `sitecustomize` at start in
every process (CLI, arbiter, workers). It patches agbento modules right after they load
(importing them here would load prometheus_client before BentoML points it at its
multiprocess directory). Faults, each naming SECRET so tests can check it never leaks:
- a request with an `X-Chaos` header: PredictionIntake (an ASGI layer) raises;
- a row with a `chaos` field: PredictionContract.accept (inside BentoML's app) raises;
- while the file $CHAOS_MODEL_FLAG exists: every model call raises (a broken model).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

SECRET = "chaos-secret-do-not-leak"


def _patch_intake(module: ModuleType) -> None:
    original = module.PredictionIntake.__call__

    async def call(self: Any, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and any(k.lower() == b"x-chaos" for k, _ in scope["headers"]):
            raise RuntimeError(f"injected fault in PredictionIntake ({SECRET})")
        await original(self, scope, receive, send)

    module.PredictionIntake.__call__ = call


def _patch_contract(module: ModuleType) -> None:
    original = module.PredictionContract.accept

    def accept(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(data, list) and any(isinstance(r, dict) and "chaos" in r for r in data):
            raise RuntimeError(f"injected fault in PredictionContract.accept ({SECRET})")
        return original(self, data, *args, **kwargs)  # whatever else accept takes

    module.PredictionContract.accept = accept


def _patch_inference(module: ModuleType) -> None:
    flag = os.environ.get("CHAOS_MODEL_FLAG", "")
    original = module.TabularRuntime._predict

    def predict(self: Any, rows: list) -> Any:
        if flag and os.path.exists(flag):
            raise RuntimeError(f"injected model fault ({SECRET})")
        return original(self, rows)

    module.TabularRuntime._predict = predict


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "agbento.http.intake": _patch_intake,
    "agbento.runtime.contract": _patch_contract,
    "agbento.runtime.inference": _patch_inference,
}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            PATCHES[name](module)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _PatchAfterImport())
