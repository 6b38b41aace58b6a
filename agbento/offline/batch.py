"""Score a file of any size against running agbento services (or in-process).

    python -m agbento.batch customers.parquet scores.parquet --url http://127.0.0.1:3000 \\
        --id-column customer_id

Reads CSV, Parquet or JSON Lines in chunks (bounded memory), sends chunks concurrently
through BentoML's HTTP client (round-robin over every `--url`), each as one Arrow table
body answered by one table (the wire: `agbento.offline.scorers`), and writes a `prediction`
column (and `proba_<class>` columns for classification) next to the id column, in input
order, as CSV or Parquet by the output's extension. `--local MODEL_TAG` scores in-process
instead: each chunk validated by column and the model's arrays written as they come.
`--explain` (with `--top K`, `--class NAME`) writes explanations instead: /explain's table
answer (`prediction`, `explained_class`, `base_value`, `method`, `contrib_<feature>`), in
chunks of at most 1,000 rows (the service's default AGBENTO_MAX_EXPLAIN_ROWS).

Nothing is lost and nothing is scored twice: each finished chunk is written atomically to
`OUTPUT.parts/`, so an interrupted run resumes where it stopped; the output file appears
(atomically) only when every chunk is done. A run scores with one model: an answer from
another model (replicas mid-rollout) stops it, and resuming chunks another model scored
needs `--restart`. An input without rows gives an output with the columns only. Rows the
service rejects get an empty prediction and a line in `OUTPUT.rejects.csv`; the exit code
is 3 when any row was rejected, 0 when none, 1 on a fatal error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from agbento.core.args import ArgumentParser
from agbento.offline.scorers import (
    REJECT_COLUMNS,
    BatchError,
    ChunkResult,
    LocalScorer,
    Outputs,
    RemoteScorer,
    Stats,
    validate_chunk,
)
from agbento.offline.watch import RunWatch
from agbento.rows.schema import is_classification

if TYPE_CHECKING:
    import pyarrow as pa

EXIT_OK, EXIT_FATAL, EXIT_REJECTED = 0, 1, 3
# Rows per chunk unless --chunk-rows says: a request within the service's default limit
# (AGBENTO_MAX_ROWS, 10,000), and in-process a size where the model's per-call cost is small.
REMOTE_CHUNK_ROWS, LOCAL_CHUNK_ROWS = 10_000, 50_000
# Explaining: the service's default AGBENTO_MAX_EXPLAIN_ROWS (in-process too: an explanation
# costs 10-60 predictions, so a chunk of these already takes 0.1-5 s).
EXPLAIN_CHUNK_ROWS = 1_000


@dataclass(frozen=True)
class BatchOptions:
    """One run's settings, from the command line (see `parse_args`)."""

    input: Path
    output: Path
    urls: tuple[str, ...] = ()  # empty with `local`
    local: str | None = None  # a model tag: score in-process
    id_column: str | None = None
    chunk_rows: int | None = None  # None: REMOTE_CHUNK_ROWS or LOCAL_CHUNK_ROWS
    concurrency: int = 4
    api_key: str | None = None
    max_retries: int = 8
    timeout_s: float = 120
    restart: bool = False
    dry_run: bool = False
    quiet: bool = False
    label: str | None = None  # the true label's column: the run's metrics at the end
    outputs: Outputs = Outputs()  # predictions, or explanations

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BatchOptions:
        return cls(
            input=args.input, output=args.output, urls=tuple(args.url or ()), local=args.local,
            id_column=args.id_column, chunk_rows=args.chunk_rows,
            concurrency=args.concurrency, api_key=args.api_key, max_retries=args.max_retries,
            timeout_s=args.timeout, restart=args.restart, dry_run=args.dry_run,
            quiet=args.quiet, label=args.label,
            outputs=Outputs(args.explain, args.top, args.explained_class),
        )

    @property
    def rows_per_chunk(self) -> int:
        if self.chunk_rows is not None:
            return self.chunk_rows
        if self.outputs.explain:
            return EXPLAIN_CHUNK_ROWS
        return LOCAL_CHUNK_ROWS if self.local else REMOTE_CHUNK_ROWS


# -- reading ------------------------------------------------------------------------------


def file_kind(path: Path) -> str:
    name = path.name.lower()
    for suffix, kind in ((".csv", "csv"), (".csv.gz", "csv"), (".parquet", "parquet"),
                         (".pq", "parquet"), (".jsonl", "jsonl"), (".ndjson", "jsonl")):
        if name.endswith(suffix):
            return kind
    raise BatchError(f"{path}: unknown file type (use .csv, .parquet or .jsonl)")


def read_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The input in order, `chunk_rows` at a time; never the whole file in memory.

    An input without rows still gives one (empty) chunk: it carries the columns."""
    kind = file_kind(path)
    if not path.exists():
        raise BatchError(f"input file not found: {path}")
    rows = 0
    for chunk in _chunks(path, kind, chunk_rows):
        rows += len(chunk)
        yield chunk
    if rows == 0:
        yield _empty_input(path, kind)


def _chunks(path: Path, kind: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if kind == "csv":
        # text as is: the service's schema parses numbers, dates and booleans itself
        try:
            yield from pd.read_csv(path, chunksize=chunk_rows, dtype=str, keep_default_na=True)
        except pd.errors.EmptyDataError:  # not even a header line
            return
    elif kind == "jsonl":
        yield from pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False)
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()


def _empty_input(path: Path, kind: str) -> pd.DataFrame:
    """No rows, with the columns (and for Parquet the types) the file declares."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).schema_arrow.empty_table().to_pandas()
    if kind == "csv":
        try:
            return pd.read_csv(path, nrows=0, dtype=str)
        except pd.errors.EmptyDataError:
            pass
    return pd.DataFrame()


def known_row_count(path: Path) -> int | None:
    """Rows in the file when its metadata says so (Parquet), for the progress bar's ETA."""
    if file_kind(path) != "parquet":
        return None
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


# -- writing ------------------------------------------------------------------------------


def output_frame(chunk: pd.DataFrame, result: ChunkResult, first_row: int,
                 id_column: str | None) -> pd.DataFrame:
    """The id column (or the row number) next to the answer's columns."""
    if id_column is not None:
        ids = {id_column: chunk[id_column].to_numpy()}
    else:
        ids = {"row": np.arange(first_row, first_row + len(chunk), dtype=np.int64)}
    out = pd.DataFrame(ids)
    for name in result.columns.columns:
        out[name] = result.columns[name].to_numpy()
    return out


def empty_output(chunk: pd.DataFrame, id_column: str | None,
                 info: dict[str, Any], outputs: Outputs | None = None) -> pa.Table:
    """The output of an input without rows: the columns a scored row would get, typed."""
    import pyarrow as pa

    if id_column is None:
        fields = [pa.field("row", pa.int64())]
    elif id_column in chunk.columns and chunk[id_column].dtype.kind in "iufbM":
        fields = [pa.field(id_column, pa.from_numpy_dtype(chunk[id_column].dtype))]
    else:
        fields = [pa.field(id_column, pa.string())]
    classes = info.get("classes") or []
    if is_classification(info["problem_type"]):
        label_type = pa.array(classes).type if classes else pa.string()
        fields.append(pa.field("prediction", label_type))
    else:
        fields.append(pa.field("prediction", pa.float64()))
    outputs = outputs or Outputs()
    for name in outputs.names(info)[1:]:  # after `prediction`: text, or float64 numbers
        text = name in ("explained_class", "method")
        fields.append(pa.field(name, pa.string() if text else pa.float64()))
    return pa.schema(fields).empty_table()


def rejects_frame(chunk: pd.DataFrame, result: ChunkResult, first_row: int,
                  id_column: str | None) -> pd.DataFrame:
    rows = result.rejects["row"].to_numpy(dtype=np.int64)
    ids = None if id_column is None else chunk[id_column].to_numpy()[rows]
    return pd.DataFrame({"row": first_row + rows, "id": ids, "field": result.rejects["field"],
                         "problem": result.rejects["problem"]}, columns=REJECT_COLUMNS)


def rejects_path(output: Path) -> Path:
    return output.with_name(output.name + ".rejects.csv")


def write_atomically(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    # lz4: parts are read once, soon; it writes at about twice snappy's speed
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp, compression="lz4")
    os.replace(tmp, path)


class Parts:
    """Finished chunks on disk (`OUTPUT.parts/`): what makes a run resumable.

    The manifest names the run (input and settings) and the model that scored the chunks:
    another run starts over; the same run against another model stops unless `restart`.
    """

    def __init__(self, output: Path, fingerprint: str, model_tag: str, restart: bool) -> None:
        self.dir = output.with_name(output.name + ".parts")
        manifest = self.dir / "manifest.json"
        if self.dir.exists():
            try:
                found = json.loads(manifest.read_text())
            except (OSError, ValueError):
                found = {}
            if restart or not isinstance(found, dict) or found.get("run") != fingerprint:
                shutil.rmtree(self.dir)  # another input or settings: start over
            elif found.get("model") != model_tag:
                scored_by = found.get("model") or "an unrecorded model"
                raise BatchError(
                    f"{self.dir} holds chunks scored by {scored_by}, but the model is now "
                    f"{model_tag}; rerun with --restart to score every row with {model_tag}")
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps({"run": fingerprint, "model": model_tag}))

    def path(self, index: int, kind: str) -> Path:
        return self.dir / f"{index:08d}.{kind}.parquet"

    def done(self, index: int) -> bool:
        return self.path(index, "out").exists()

    def save(self, index: int, out: pd.DataFrame, rejects: pd.DataFrame) -> None:
        if len(rejects):  # none is the common case: no file
            write_atomically(rejects, self.path(index, "rejects"))
        write_atomically(out, self.path(index, "out"))  # last: marks the chunk done

    def schema(self, count: int) -> pa.Schema:
        """The output's columns, typed by every part: a chunk whose rows were all refused
        has null-typed answers, which another chunk's labels or numbers type."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pa.unify_schemas([pq.read_schema(self.path(i, "out")) for i in range(count)],
                                promote_options="permissive")

    def assemble(self, output: Path, count: int, empty: pa.Table) -> int:
        """Parts -> OUTPUT (and OUTPUT.rejects.csv) in order, atomically; rejects count.

        No parts (an input without rows): OUTPUT is `empty`, the typed columns alone."""
        tmp = output.with_name(output.name + ".tmp")
        rejects_file = rejects_path(output)
        rejected = 0
        writer = None
        with open(rejects_file.with_name(rejects_file.name + ".tmp"), "w") as rejects_out:
            pd.DataFrame(columns=REJECT_COLUMNS).to_csv(rejects_out, index=False)
            for index in range(count):
                if self.path(index, "rejects").exists():
                    rejects = pd.read_parquet(self.path(index, "rejects"))
                    rejected += len(rejects)
                    rejects.to_csv(rejects_out, index=False, header=False)
                if file_kind(output) == "csv":
                    pd.read_parquet(self.path(index, "out")).to_csv(
                        tmp, index=False, header=index == 0, mode="w" if index == 0 else "a")
                else:
                    import pyarrow.parquet as pq

                    table = pq.read_table(self.path(index, "out"))  # no pandas on the way
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, self.schema(count))
                    writer.write_table(table.cast(writer.schema))
        if writer is not None:
            writer.close()
        if count == 0:
            if file_kind(output) == "csv":
                empty.to_pandas().to_csv(tmp, index=False)
            else:
                import pyarrow.parquet as pq

                pq.write_table(empty, tmp)
        os.replace(tmp, output)
        os.replace(rejects_file.with_name(rejects_file.name + ".tmp"), rejects_file)
        shutil.rmtree(self.dir)
        return rejected


def run_fingerprint(options: BatchOptions) -> str:
    """The input file and the settings that decide the chunks (the model: see `Parts`)."""
    stat = options.input.stat()
    facts = [str(options.input.resolve()), stat.st_size, stat.st_mtime_ns, options.rows_per_chunk,
             options.id_column, options.local or sorted(options.urls)]
    if options.outputs.explain:  # another answer: another run (a prediction run's facts stay)
        facts.append(["explain", options.outputs.top, options.outputs.explained_class])
    return hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()[:16]


# -- the run ------------------------------------------------------------------------------


async def score_file(options: BatchOptions) -> int:
    from tqdm import tqdm

    stats = Stats()
    scorer: Any = (LocalScorer(options.local, options.outputs) if options.local else
                   RemoteScorer(list(options.urls), options.api_key, options.max_retries,
                                options.timeout_s, stats, outputs=options.outputs))
    async with scorer:
        info = await scorer.model_info()
        if options.dry_run:
            return dry_run(options, info)
        model_tag = str(info["tag"])
        watch = RunWatch(info, options.label)
        ready = time.monotonic()  # rows/s counts scoring, not loading the model or connecting
        parts = Parts(options.output, run_fingerprint(options), model_tag, options.restart)
        window = asyncio.Semaphore(options.concurrency)
        pending: set[asyncio.Task[None]] = set()
        progress = tqdm(unit="rows", desc="scoring", dynamic_ncols=True, disable=options.quiet,
                        total=known_row_count(options.input), unit_scale=True)
        count = 0  # chunks with rows: the parts are numbered over these only
        first_row = 0
        empty = None

        async def one(index: int, chunk: pd.DataFrame, first: int) -> None:
            try:
                result = await scorer.score(chunk)
                parts.save(index, output_frame(chunk, result, first, options.id_column),
                           rejects_frame(chunk, result, first, options.id_column))
                stats.rejected += len(result.rejects)
                stats.rows += len(chunk)
                progress.update(len(chunk))
            finally:
                window.release()

        try:
            for chunk in read_chunks(options.input, options.rows_per_chunk):
                chunk = watch.take(chunk)  # drift sample, labels kept (and not sent)
                if (options.id_column is not None and options.id_column not in chunk.columns
                        and (len(chunk) or len(chunk.columns))):
                    raise BatchError(f"--id-column {options.id_column!r} is not in {options.input}")
                if chunk.empty:  # nothing to send (a header-only CSV, an empty row group)
                    empty = chunk
                    continue
                index = count
                count += 1
                if parts.done(index):
                    stats.chunks_resumed += 1
                    progress.update(len(chunk))
                else:
                    await window.acquire()
                    task = asyncio.create_task(one(index, chunk.reset_index(drop=True),
                                                   first_row))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    failed = [t for t in list(pending) if t.done() and t.exception()]
                    if failed:
                        raise failed[0].exception()  # type: ignore[misc]
                first_row += len(chunk)
            if pending:
                await asyncio.gather(*pending)
        finally:
            for task in pending:
                task.cancel()
            progress.close()
        rejected = parts.assemble(options.output, count,
                                  empty_output(empty if empty is not None else pd.DataFrame(),
                                               options.id_column, info, options.outputs))
    elapsed = time.monotonic() - ready
    summary = {
        "rows": first_row, "scored_now": stats.rows, "chunks_resumed": stats.chunks_resumed,
        "startup_s": round(ready - stats.started, 2), "seconds": round(elapsed, 2),
        "rows_per_s": round(stats.rows / elapsed, 1) if elapsed else None,
        "retries": stats.retries, "rejected_rows": rejected,
        "output": str(options.output),
        "rejects": str(rejects_path(options.output)),
        **watch.report(options.output),
    }
    print(json.dumps(summary), file=sys.stderr)
    return EXIT_REJECTED if rejected else EXIT_OK


def dry_run(options: BatchOptions, info: dict[str, Any]) -> int:
    """Validate the file against the served model's schema; send nothing."""
    from agbento.rows.schema import FeatureSchema

    schema = FeatureSchema.from_dict(info["schema"])
    problems = rows = 0
    examples: list[dict[str, Any]] = []
    for chunk in read_chunks(options.input, options.rows_per_chunk):
        found = validate_chunk(schema, chunk).rejects
        problems += len(found)
        for row, where, problem in found.head(max(0, 5 - len(examples))).itertuples(
                index=False):
            examples.append({"row": rows + int(row), "field": where, "problem": problem})
        rows += len(chunk)
    print(json.dumps({"rows": rows, "problems": problems, "first_problems": examples}))
    return EXIT_REJECTED if problems else EXIT_OK


def parse_args(argv: list[str] | None = None, prog: str = "agbento batch") -> argparse.Namespace:
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help=".csv, .parquet or .jsonl")
    parser.add_argument("output", type=Path, help=".csv or .parquet")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", action="append", help="service URL (repeat for replicas)")
    where.add_argument("--local", metavar="MODEL_TAG",
                       help="score in-process, no server (a tag, or NAME@STAGE)")
    parser.add_argument("--id-column", help="column passed through to the output")
    parser.add_argument("--chunk-rows", type=int, help=f"rows per request ({REMOTE_CHUNK_ROWS}; "
                        f"{LOCAL_CHUNK_ROWS} with --local)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    parser.add_argument("--api-key", default=os.environ.get("AGBENTO_API_KEY"),
                        help="sent as a Bearer token (default: $AGBENTO_API_KEY)")
    parser.add_argument("--max-retries", type=int, default=8, help="per request (8)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per request")
    parser.add_argument("--restart", action="store_true", help="ignore finished chunks")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate against the served schema, send no rows")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--label", help="the true label's column: not sent; the run's metrics "
                        "beside the holdout's are in the summary")
    explain = parser.add_argument_group("explanations (POST /explain; a key with `explain`)")
    explain.add_argument("--explain", action="store_true",
                         help="write each row's explanation instead of its prediction: "
                         "prediction, explained_class, base_value, method, contrib_<feature> "
                         f"(chunks of {EXPLAIN_CHUNK_ROWS} rows unless --chunk-rows)")
    explain.add_argument("--top", type=int, metavar="K",
                         help="keep each row's K largest contributions (the rest: `others`)")
    explain.add_argument("--class", dest="explained_class", metavar="NAME",
                         help="explain this class for every row (default: the predicted one)")
    args = parser.parse_args(argv)
    if (args.chunk_rows is not None and args.chunk_rows < 1) or args.concurrency < 1:
        parser.error("--chunk-rows and --concurrency must be positive")
    if not args.explain and (args.top is not None or args.explained_class is not None):
        parser.error("--top and --class go with --explain")
    if args.top is not None and args.top < 1:
        parser.error("--top must be at least 1")
    return args


def main(argv: list[str] | None = None, prog: str = "agbento batch") -> int:
    options = BatchOptions.from_args(parse_args(argv, prog))
    try:
        file_kind(options.output)
        return asyncio.run(score_file(options))
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("interrupted: finished chunks are kept; run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
