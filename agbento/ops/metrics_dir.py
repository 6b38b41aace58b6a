"""A Prometheus multiprocess directory of this server's own.

`bentoml serve` hands every worker `$BENTOML_HOME/prometheus_multiproc_dir` and empties it
when it starts (BentoML 1.4.39, `bentoml/serving.py: ensure_prometheus_dir`), before it
even binds its port: a second start on the same machine, failed or not, wiped the running
server's metrics (every agbento series dropped to nothing, `agbento_model_ready`
included). So each worker moves to a directory named after its server (the arbiter's
pid), beside BentoML's rather than inside it, before any metric file is opened;
prometheus_client reads the variable when a value is created and when /metrics is
collected, so writers and the collector agree. Directories of servers that are gone are
removed by the next worker that starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
SUFFIX = ".agbento"


def private_metrics_dir(environ: dict[str, str] | os._Environ[str] = os.environ,
                        server_pid: int | None = None) -> Path | None:
    """Point this worker's metrics at `<BentoML's dir>.agbento/<server pid>`; returns it
    (None outside a `bentoml serve` worker, where nothing is shared)."""
    shared = environ.get(VARIABLE)
    if not shared:
        return None
    shared_path = Path(shared)
    if shared_path.parent.name.endswith(SUFFIX):  # already moved (a re-import)
        return shared_path
    server = server_pid if server_pid is not None else os.getppid()
    root = shared_path.with_name(shared_path.name + SUFFIX)
    own = root / str(server)
    own.mkdir(parents=True, exist_ok=True)
    remove_gone_servers(root, keep=server)
    environ[VARIABLE] = str(own)
    return own


def remove_gone_servers(root: Path, keep: int) -> None:
    """The directories of servers whose arbiter process no longer exists."""
    for entry in root.iterdir():
        if not entry.name.isdigit() or int(entry.name) == keep or alive(int(entry.name)):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(entry)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
