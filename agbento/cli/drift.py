"""`agbento drift --model TAG --data FILE [--baseline FILE] [--threshold 0.2]`: how far a
file's rows are from the model's training rows, per feature (PSI over the bins stored in the
model card at training), as JSON on stdout and a bar chart (PNG).

    agbento drift --model agbento-demo:latest --data new_penguins.parquet --chart drift.png

Exit 0: no feature's PSI is above the threshold; 3: at least one is; 2: the command could
not run (one line on stderr). With `--baseline FILE` the file is compared with that file's
rows (in the same training bins) instead of the training rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from agbento.cli import CliError, app
from agbento.models.store import ModelCard
from agbento.monitoring.drift import reference_of
from agbento.monitoring.reference import BinTally, FeatureDrift, Reference, compare

EXIT_DRIFT = 3
EXIT_ERROR = 2
CHUNK_ROWS = 50_000  # rows read (and validated) at a time: memory stays bounded


def load_card(reference: str) -> ModelCard:
    """The stored model `reference` names: NAME:VERSION, NAME:latest, NAME or NAME@STAGE."""
    from agbento.models.stages import resolve_tag
    from agbento.models.store import find_card

    try:
        return find_card(resolve_tag(reference))
    except LookupError as exc:  # not stored, no such stage, not a tag
        raise CliError(str(exc), EXIT_ERROR) from None


def tally_file(path: Path, card: ModelCard, reference: Reference) -> tuple[BinTally, int]:
    """The file's accepted rows counted into the reference bins, and how many were refused
    by the model's schema (those are not counted)."""
    from agbento.offline.batch import read_chunks
    from agbento.offline.scorers import BatchError, validate_chunk

    tally = BinTally(reference)
    refused = 0
    try:
        for chunk in read_chunks(path, CHUNK_ROWS):
            frame = validate_chunk(card.schema, chunk).frame
            refused += len(chunk) - len(frame)
            tally.add(frame)
    except BatchError as exc:
        raise CliError(str(exc), EXIT_ERROR) from None
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {type(exc).__name__}: {exc}", EXIT_ERROR) from None
    if not tally.rows:
        raise CliError(f"{path}: no row passes the model's schema ({refused} refused)",
                       EXIT_ERROR)
    return tally, refused


def draw_chart(drifts: list[FeatureDrift], threshold: float, path: Path, title: str) -> None:
    """PSI per feature as horizontal bars, those above the threshold in red."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display
    import matplotlib.pyplot as plt

    shown = list(reversed(drifts))  # highest at the top
    figure, axes = plt.subplots(figsize=(8, 1.2 + 0.35 * len(shown)))
    axes.barh([d.name for d in shown], [d.psi for d in shown],
              color=["#d62728" if d.psi > threshold else "#1f77b4" for d in shown])
    axes.axvline(threshold, color="black", linestyle="--", linewidth=1,
                 label=f"threshold {threshold:g}")
    axes.set_xlabel("PSI")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def report(card: ModelCard, data: Path, baseline: Path | None, threshold: float,
           tally: BinTally, refused: int, drifts: list[FeatureDrift]) -> dict[str, Any]:
    return {
        "model": card.tag,
        "data": str(data),
        "baseline": str(baseline) if baseline is not None else "training",
        "rows": tally.rows,
        "refused_rows": refused,
        "threshold": threshold,
        "drifting": [d.name for d in drifts if d.psi > threshold],
        "features": [d.to_dict(threshold) for d in drifts],
    }


@app.command()
def drift(
    model: Annotated[str, typer.Option(
        "--model", help="NAME:VERSION, NAME:latest or NAME@STAGE in the BentoML store")],
    data: Annotated[Path, typer.Option("--data", help="rows to check: .csv, .parquet, "
                                       ".jsonl")],
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", help="compare with this file's rows instead of the training rows")] = None,
    threshold: Annotated[float, typer.Option(
        help="PSI above which a feature drifts (0.1: moderate, 0.2: large)")] = 0.2,
    chart: Annotated[Path, typer.Option(help="the bar chart (PNG)")] = Path("drift.png"),
) -> None:
    """PSI per feature between a file and the training rows; exit 3 when any drifts."""
    if not threshold > 0:
        raise CliError("--threshold must be above 0", EXIT_ERROR)
    card = load_card(model)
    reference = reference_of(card)
    if reference is None:
        raise CliError(f"model {card.tag} has no reference distributions: retrain it with "
                       "this version of train.py", EXIT_ERROR)
    tally, refused = tally_file(data, card, reference)
    expected = tally_file(baseline, card, reference)[0] if baseline is not None else None
    drifts = compare(tally, expected)
    result = report(card, data, baseline, threshold, tally, refused, drifts)
    try:
        draw_chart(drifts, threshold, chart, f"{card.tag}: {data.name} vs "
                   f"{baseline.name if baseline else 'training rows'}")
        result["chart"] = str(chart)
    except ImportError:
        typer.echo("warning: matplotlib is not installed (pip install -e '.[bench]'): "
                   "no chart", err=True)
    except OSError as exc:
        raise CliError(f"cannot write the chart {chart}: {exc}", EXIT_ERROR) from None
    typer.echo(json.dumps(result, indent=1))
    if result["drifting"]:
        raise typer.Exit(EXIT_DRIFT)
