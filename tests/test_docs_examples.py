"""Every shell and Python example of README.md and docs/*.md, run against a real server.

Each page's ```bash and ```python blocks run in page order, as a reader pastes them into
one terminal: in a working directory of the page's own that starts as a copy of the
project's files and keeps what the page's earlier blocks made, with the variables the
earlier blocks exported and the directory they left. Bash runs with `set -euo pipefail`,
so a variable no block defined fails. The server is one `bentoml serve` of a model trained
from the demo table under the demo model's name (`agbento-demo`), on a free loopback port:
`127.0.0.1:3000` and `localhost:3000` in the examples are rewritten to it, and `.venv/bin/`
to this interpreter's directory. Every block must exit 0. A ```json or ```text block right
after a run block (no heading between) is its expected output: the printed JSON must have
the same keys (recursively; values vary), and each line of expected text that starts with
a word (`error:`, `model:`) must start a printed line.

An HTML comment on the line before a fence changes what happens to the block:

    <!-- example: skip (why it cannot run here) -->   not run; listed as a skipped test
    <!-- example: background -->                      a server: started in the background on
                                                       a free port, which `:3000` means for the
                                                       rest of the page; stopped at its end
    <!-- example: needs TOOL -->                       run only where TOOL is installed

The rules the README findings of issue 26 broke are tests of their own below: serve
commands that others can reach use keys; the Makefile's extras are as the pages say;
tritonclient's headers dict is mutated, as docs/protocols.md warns.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.servers import BentoServer, free_port, start_server, stop

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
RUN = ("bash", "python")
OUTPUT = ("json", "text", "")
# what a reader has in the project's directory when following the pages
PROJECT_FILES = ("agbento", "service.py", "train.py", "bentofile.yaml", "pyproject.toml",
                 "deploy", "loadtests")
BLOCK_TIMEOUT_S = 300
READY_TIMEOUT_S = 120

FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*example:\s*(\w+)\s*(.*?)\s*-->$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based, the fence's line
    lang: str
    text: str
    marker: str = ""  # "", "skip", "background" or "needs"
    argument: str = ""  # the skip's reason, the needed tool
    after_heading: bool = False  # a heading stands between the previous block and this one
    expected: Block | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN and self.marker != "skip"


def parse(page: Path) -> list[Block]:
    """The fenced blocks of a page, each with its marker and expected output."""
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    heading = False
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if lines[i].startswith("#"):
            heading = True
        if not opened:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        block = Block(page, i + 1, opened[1], "\n".join(lines[i + 1:end]) + "\n",
                      after_heading=heading)
        before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        if marked := MARKER.match(before):
            block.marker, argument = marked[1], marked[2]
            block.argument = argument[1:-1] if argument.startswith("(") else argument
        blocks.append(block)
        heading = False
        i = end + 1
    for previous, block in zip(blocks, blocks[1:], strict=False):
        if previous.lang in RUN and block.lang in OUTPUT and not block.after_heading:
            previous.expected = block
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in parse(page)]


def missing_tool(block: Block) -> bool:
    return block.marker == "needs" and shutil.which(block.argument) is None


# -- the markers themselves ---------------------------------------------------------------------

def test_blocks_are_closed_and_markers_known() -> None:
    for block in ALL_BLOCKS:
        # an opening fence inside a block: the block before it was never closed
        assert not re.search(r"^```\w+\s*$", block.text, re.MULTILINE), block.where
        assert block.marker in ("", "skip", "background", "needs"), block.where
        if block.marker in ("skip", "needs"):
            assert block.argument, f"{block.where}: say why (or which tool)"
        if block.marker:
            assert block.lang in RUN, f"{block.where}: a marker on a {block.lang!r} block"


SKIPPED = [block for block in ALL_BLOCKS
           if block.lang in RUN and (block.marker == "skip" or missing_tool(block))]


@pytest.mark.parametrize("block", SKIPPED, ids=[block.where for block in SKIPPED])
def test_skipped_example(block: Block) -> None:
    """One skipped test per example that cannot run here, so pytest counts and lists them."""
    reason = block.argument if block.marker == "skip" else f"needs {block.argument}"
    pytest.skip(f"{block.where}: {reason}")


# -- running a page -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_server() -> Iterator[BentoServer]:
    """The demo model's schema and name, trained small, served as `make serve` serves it
    (no keys, loopback), with one API worker."""
    from agbento.training.pipeline import train
    from tests.tiny_models import tiny_config

    train(tiny_config("agbento-demo", "species"), lambda _message: None)
    with start_server(ROOT, "agbento-demo:latest", AGBENTO_API_WORKERS="1") as server:
        yield server


def shared_home() -> Path:
    """A BentoML home of its own (each `bentoml serve` wipes its home's metrics directory)
    that shares the session's models, Bentos and stage registry."""
    shared = Path(os.environ["BENTOML_HOME"])
    home = Path(tempfile.mkdtemp(prefix="bentoml-home-"))
    for name in ("models", "bentos", "agbento"):
        (shared / name).mkdir(parents=True, exist_ok=True)
        (home / name).symlink_to(shared / name, target_is_directory=True)
    return home


@dataclass
class Reader:
    """One reader's terminal: a working directory, exported variables, servers started."""

    page: Path
    port: int
    workdir: Path
    state: Path
    env: dict[str, str]
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def rewrite(self, text: str) -> str:
        text = re.sub(r"\b(?:127\.0\.0\.1|localhost):3000\b", f"127.0.0.1:{self.port}", text)
        text = re.sub(r"--port 3000\b", f"--port {self.port}", text)
        return text.replace(".venv/bin/", f"{BIN}/")

    def script(self, body: str, keep_state: bool = True) -> str:
        env_file, cwd_file = self.state / "env", self.state / "cwd"
        lines = ["set -euo pipefail",
                 f'[ -f "{env_file}" ] && source "{env_file}"',
                 f'cd "$(cat "{cwd_file}")"']
        if keep_state:
            lines.append(f"trap 'export -p > \"{env_file}\"; pwd > \"{cwd_file}\"' EXIT")
        return "\n".join(lines) + "\n" + body

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        text = self.rewrite(block.text)
        if block.lang == "python":
            source = self.state / f"block-{block.line}.py"
            source.write_text(text)
            body = f'exec "{BIN}/python" "{source}"\n'
        else:
            body = text
        return subprocess.run(["bash", "-c", self.script(body, block.lang == "bash")],
                              env=self.env, capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S, start_new_session=True)

    def serve(self, block: Block) -> None:
        """A server command: in the background on a port of its own, until it is ready."""
        self.port = free_port()
        log = self.state / f"server-{block.line}.log"
        env = {**self.env, "BENTOML_HOME": str(shared_home())}
        process = subprocess.Popen(
            ["bash", "-c", self.script(self.rewrite(block.text),
                                       keep_state=False)],
            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.servers.append(process)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"{block.where}: the server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{block.where}: not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)

    def close(self) -> None:
        for process in self.servers:
            stop(process)


def reader_for(page: Path, server: BentoServer, tmp_path: Path) -> Reader:
    workdir, state = tmp_path / "project", tmp_path / "state"
    workdir.mkdir()
    state.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, workdir / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tmp"))
        else:
            shutil.copy2(source, workdir / name)
    (state / "cwd").write_text(str(workdir))
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("AGBENTO_") and name not in ("KEY", "PYTHONSTARTUP")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT),
               BENTOML_DO_NOT_TRACK="true", PYTHONUNBUFFERED="1", COLUMNS="120")
    return Reader(page, int(server.url.rsplit(":", 1)[1]), workdir, state, env)


# -- comparing with the expected output ----------------------------------------------------------

def json_documents(text: str) -> list[object]:
    """Every JSON object printed in `text` that starts a line (and may span lines)."""
    decoder = json.JSONDecoder()
    found: list[object] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        start = offset + len(line) - len(line.lstrip())
        offset += len(line)
        if line.lstrip().startswith("{"):
            try:
                found.append(decoder.raw_decode(text, start)[0])
            except json.JSONDecodeError:
                pass
    return found


def key_problems(expected: object, actual: object, path: str = "") -> list[str]:
    """Where `actual` does not have `expected`'s keys (values are not compared)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '.'}: expected an object, got {type(actual).__name__}"]
        problems = []
        if set(expected) != set(actual):
            problems.append(f"{path or '.'}: keys {sorted(actual)} instead of {sorted(expected)}")
        for key in set(expected) & set(actual):
            problems += key_problems(expected[key], actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list) and expected and isinstance(expected[0], (dict, list)):
        if not isinstance(actual, list) or not actual:
            return [f"{path}: expected a non-empty list, got {actual!r:.80}"]
        return key_problems(expected[0], actual[0], f"{path}[0]")
    return []


def expected_json(block: Block) -> object | None:
    try:
        return json.loads(block.text)
    except json.JSONDecodeError:
        return None


def check_output(block: Block, out: str) -> None:
    expected = block.expected
    assert expected is not None
    wanted = expected_json(expected)
    if wanted is not None:
        printed = json_documents(out)
        attempts = [key_problems(wanted, document) for document in printed]
        if not any(not problems for problems in attempts):
            closest = min(attempts, key=len) if attempts else ["no JSON object printed"]
            pytest.fail(f"{block.where}: the output does not have the keys of "
                        f"{expected.where}: {closest}\n--- output:\n{out[-3000:]}")
        return
    printed_lines = [line.lstrip() for line in out.splitlines()]
    for line in expected.text.splitlines():
        word = line.strip().split(" ", 1)[0]
        if not word or word == "..." or any(char.isdigit() for char in word):
            continue
        if not any(printed.startswith(word) for printed in printed_lines):
            pytest.fail(f"{block.where}: no printed line starts with {word!r} as "
                        f"{expected.where} shows\n--- output:\n{out[-3000:]}")


def unexpected_error(block: Block, stdout: str) -> object | None:
    """A JSON error answer printed where the page shows none."""
    wanted = expected_json(block.expected) if block.expected else None
    if isinstance(wanted, dict) and "error" in wanted:
        return None
    return next((doc for doc in json_documents(stdout)
                 if isinstance(doc, dict) and "error" in doc), None)


RUNNABLE_PAGES = [page for page in PAGES
                  if any(block.runs and not missing_tool(block) for block in parse(page))]


@pytest.mark.integration
@pytest.mark.parametrize("page", RUNNABLE_PAGES,
                         ids=[str(page.relative_to(ROOT)) for page in RUNNABLE_PAGES])
def test_page_examples_run(page: Path, demo_server: BentoServer, tmp_path: Path) -> None:
    reader = reader_for(page, demo_server, tmp_path)
    try:
        for block in parse(page):
            if not block.runs or missing_tool(block):
                continue
            started = time.monotonic()
            if block.marker == "background":
                reader.serve(block)
                print(f"{block.where}: serving on port {reader.port} after "
                      f"{time.monotonic() - started:.1f} s")
                continue
            done = reader.run(block)
            print(f"{block.where}: exit {done.returncode} in {time.monotonic() - started:.1f} s")
            out = done.stdout + done.stderr
            if done.returncode != 0:
                pytest.fail(f"{block.where}: exit {done.returncode}\n--- block:\n{block.text}"
                            f"--- output:\n{out[-4000:]}")
            assert "Couldn't read data from file" not in done.stderr, (block.where, out)
            if (error := unexpected_error(block, done.stdout)) is not None:
                pytest.fail(f"{block.where}: answered an error: {error}")
            if block.expected is not None:
                check_output(block, out)
    finally:
        reader.close()


# -- the rules the README broke, each a test ----------------------------------------------------

SERVE = re.compile(r"\b(bentoml serve|agbento serve|make serve)\b[^\n]*")


def commands(text: str) -> list[str]:
    """Shell lines of a block with their backslash continuations joined, environment
    assignments before them included."""
    return [line for line in re.sub(r"\\\n\s*", " ", text).splitlines() if line.strip()]


def test_serve_commands_others_can_reach_use_keys() -> None:
    """`bentoml serve` binds 0.0.0.0 unless told otherwise (`agbento serve`: 127.0.0.1): every
    serve command in the pages is loopback-only or turns keys on."""
    found = []
    for block in ALL_BLOCKS:
        if block.lang != "bash":
            continue
        for line in commands(block.text):
            if not SERVE.search(line.split("#", 1)[0]):
                continue
            command = line.split("#", 1)[0]
            found.append(command)
            loopback = ("--host 127.0.0.1" in command
                        or ("make serve" in command and "HOST=" not in command)
                        # agbento serve binds 127.0.0.1 unless --host says otherwise
                        or ("agbento serve" in command and "--host" not in command))
            keyed = "AGBENTO_API_KEYS_FILE=" in command or "--keys " in command
            assert loopback or keyed, f"{block.where}: {command.strip()}"
    for page in PAGES:  # commands quoted in the prose
        for span in re.findall(r"`([^`\n]*\bserve\b[^`\n]*)`", page.read_text()):
            if "HOST=0.0.0.0" in span or "--host 0.0.0.0" in span:
                assert "AGBENTO_API_KEYS_FILE=" in span or "--keys " in span, (page, span)
    assert len(found) >= 5, found


def make_extras(target: str) -> set[str]:
    """The extras a Makefile target's pip install names."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
    return set(re.search(r"-e '\.\[([\w,]+)\]'", recipe)[1].split(","))


def test_the_pages_say_which_make_target_installs_pyspark() -> None:
    assert make_extras("$(VENV)/.installed") == {"dev"}
    assert "spark" in make_extras("$(VENV)/.installed-spark")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*install-spark", makefile, re.MULTILINE)
    spark = (ROOT / "docs" / "spark.md").read_text()
    assert "`make install-spark` and `make test` install it, `make install`" in spark
    for page in PAGES:
        assert not re.search(r"make install`? includes", page.read_text()), page


def test_docs_extra_is_in_dev() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    pin = re.search(r'^docs = \["(mkdocs-material[^"]*)"\]', pyproject, re.MULTILINE)[1]
    dev = pyproject.split("\ndev = [", 1)[1].split("\n]", 1)[0]
    assert f'"{pin}"' in dev


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 10
    for link in local:
        assert (ROOT / link).exists(), link


@pytest.mark.integration
def test_tritonclient_writes_into_the_headers_it_is_given(demo_server: BentoServer) -> None:
    """docs/protocols.md's warning: infer() adds Inference-Header-Content-Length to the
    caller's dict, and a JSON request sent with that dict afterwards is refused."""
    import numpy as np
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(demo_server.url.removeprefix("http://"))
    inputs = []
    row = {"island": "Dream", "bill_length_mm": 39.5, "bill_depth_mm": 17.8,
           "flipper_length_mm": 188.0, "body_mass_g": 3300.0, "sex": "female", "year": 2007}
    for spec in client.get_model_metadata("agbento-demo")["inputs"]:
        dtype = {"BYTES": np.object_, "FP64": np.float64, "INT64": np.int64}[spec["datatype"]]
        tensor = httpclient.InferInput(spec["name"], [1], spec["datatype"])
        tensor.set_data_from_numpy(np.array([row[spec["name"]]], dtype=dtype))
        inputs.append(tensor)
    headers = {"X-API-Key": "any"}
    client.infer("agbento-demo", inputs, headers=headers)
    assert "Inference-Header-Content-Length" in headers
    body = {"inputs": [{"name": name, "datatype": "BYTES" if isinstance(value, str) else "FP64",
                        "shape": [1], "data": [value]} for name, value in row.items()]}
    fresh = httpx.post(f"{demo_server.url}/v2/models/agbento-demo/infer", json=body,
                       headers={"X-API-Key": "any"})
    reused = httpx.post(f"{demo_server.url}/v2/models/agbento-demo/infer", json=body,
                        headers={k: str(v) for k, v in headers.items()})
    assert fresh.status_code == 200, fresh.text
    assert reused.status_code == 400, reused.text
