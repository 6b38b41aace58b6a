"""The peers' venvs: each peer server from PyPI, pinned, beside the very AutoGluon and model
libraries the bench runs (so the stored predictor's pickles load and answer alike).

Made once and kept under loadtests/.peers/ (gitignored), one folder per peer and set of pins;
each records how long its install took, its size and the versions it got.

    python -m loadtests.peers.venvs                   # make every peer's venv, print a summary
    python -m loadtests.peers.venvs kserve bentoml-1.4.40 --rebuild
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "loadtests" / ".peers"
INSTALL_TIMEOUT_S = 1800
# What the predictor's pickles need, at the versions this venv (agbento's) has: the peer's
# venv gets them as constraints, so a peer whose pins exclude one of them fails to install
# and says which.
MODEL_REQUIREMENT = "autogluon.tabular[lightgbm,catboost,xgboost]"
MODEL_LIBRARIES = ("autogluon.tabular", "autogluon.core", "autogluon.features", "lightgbm",
                   "catboost", "xgboost-cpu", "scikit-learn", "scipy", "numpy", "pandas")


@dataclass(frozen=True)
class Peer:
    name: str
    packages: tuple[str, ...]  # pinned, besides the model libraries
    shows: tuple[str, ...]  # the distributions whose versions the report lists
    with_model: bool = True


PEERS = {p.name: p for p in (
    Peer("kserve", ("kserve==0.21.0",), ("kserve", "fastapi", "uvicorn", "uvloop")),
    # mlserver leaves uvloop unpinned; from uvloop 0.22 on, asyncio.get_event_loop() with no
    # loop raises, and MLServer 1.7.1's parallel workers call it at start and die
    Peer("mlserver", ("mlserver==1.7.1", "uvloop==0.21.0"),
         ("mlserver", "fastapi", "uvicorn", "uvloop")),
    Peer("ray", ("ray[serve]==2.60.0",), ("ray", "fastapi", "uvicorn", "uvloop")),
    # issue 27: does BentoML 1.4.40 install beside AutoGluon 1.6.3 now (certifi pin)?
    Peer("bentoml-1.4.40", ("bentoml==1.4.40",), ("bentoml", "certifi", "starlette",
                                                   "uvicorn")),
)}


class VenvError(RuntimeError):
    """A peer's venv could not be made: pip's own words about why (a pin conflict, say)."""


def model_pins() -> list[str]:
    """`name==version` of every model library as installed here."""
    pins = []
    for name in MODEL_LIBRARIES:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return pins


def requirements(peer: Peer) -> tuple[list[str], list[str]]:
    """(what to install, the constraints it must meet)."""
    pins = model_pins() if peer.with_model else []
    ag = next((p.split("==")[1] for p in pins if p.startswith("autogluon.tabular==")), None)
    model = [f"{MODEL_REQUIREMENT}=={ag}"] if ag else []
    return [*peer.packages, *model], pins


def venv_dir(peer: Peer) -> Path:
    wanted, pins = requirements(peer)
    key = json.dumps([sys.version_info[:2], wanted, pins]).encode()
    return CACHE / f"{peer.name}-{hashlib.sha256(key).hexdigest()[:10]}"


def record_of(peer: Peer) -> dict[str, Any] | None:
    """The install record of a finished venv, or None."""
    path = venv_dir(peer) / "install.json"
    return json.loads(path.read_text()) if path.exists() else None


def python_of(peer: Peer) -> Path:
    return venv_dir(peer) / "bin" / "python"


def size_mb(path: Path) -> float:
    total = sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return round(total / 2**20, 1)


def versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def ensure(peer: Peer | str, rebuild: bool = False) -> dict[str, Any]:
    """The peer's venv, made when missing: its install record (python, seconds, MB, versions)."""
    peer = PEERS[peer] if isinstance(peer, str) else peer
    record = None if rebuild else record_of(peer)
    if record is not None:
        return {**record, "cached": True}
    venv = venv_dir(peer)
    wanted, pins = requirements(peer)
    print(f"peer venv {peer.name}: installing {' '.join(wanted)} into {venv}", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    (venv / "constraints.txt").write_text("\n".join(pins) + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
           "--progress-bar", "off", "-c", str(venv / "constraints.txt"), *wanted]
    try:
        done = subprocess.run(pip, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise VenvError(f"{peer.name}: pip did not finish in {INSTALL_TIMEOUT_S} s") from exc
    (venv / "pip.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise VenvError(f"{peer.name}: pip install {' '.join(wanted)} with {', '.join(pins)} "
                        f"failed:\n{conflict_lines(done.stdout + done.stderr)}")
    python = venv / "bin" / "python"
    record = {"peer": peer.name, "python": str(python), "requirements": wanted,
              "constraints": pins, "install_s": round(time.perf_counter() - start, 1),
              "size_mb": size_mb(venv),
              "versions": versions(python, (*peer.shows, *MODEL_LIBRARIES)),
              "made": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (venv / "install.json").write_text(json.dumps(record, indent=2) + "\n")
    return {**record, "cached": False}


def conflict_lines(log: str, most: int = 25) -> str:
    """pip's explanation of a failed resolution (or its last lines)."""
    lines = log.splitlines()
    marks = [i for i, line in enumerate(lines)
             if "conflict" in line.lower() or "ResolutionImpossible" in line
             or line.startswith("ERROR")]
    start = marks[0] if marks else max(0, len(lines) - most)
    return "\n".join(lines[start:start + most])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peers", nargs="*", help=f"from {', '.join(PEERS)} (default: all)")
    parser.add_argument("--rebuild", action="store_true", help="install again even if cached")
    parser.add_argument("--out", type=Path, help="also write the install records (JSON)")
    args = parser.parse_args(argv)
    records: dict[str, Any] = {}
    for name in args.peers or PEERS:
        try:
            record = records[name] = ensure(name, args.rebuild)
        except VenvError as exc:
            print(f"{name}: FAILED\n{exc}")
            records[name] = {"peer": name, "failed": str(exc)}
            continue
        shown = ", ".join(f"{k} {v}" for k, v in record["versions"].items())
        print(f"{name}: {'cached' if record['cached'] else 'installed'} in "
              f"{record['install_s']} s, {record['size_mb']} MB: {shown}")
    if args.out:
        args.out.write_text(json.dumps(records, indent=2) + "\n")
    return 1 if any("failed" in r for r in records.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
