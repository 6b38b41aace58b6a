"""Model-agnostic contributions: Shapley values of the model's output against a background
sample, estimated by antithetic permutation sampling over the raw features.

For each row, each sampled feature order (and its reverse) walks from "every feature from a
background row" to "every feature from this row", one feature at a time; a feature's
contribution is the mean change of the output (averaged over the background rows) when it
switches. The changes along one order telescope, so base + sum(contributions) is the
model's output for the row exactly (base: the mean output over the background), whatever
the number of orders; more orders only lower the sampling error of each contribution.

Cost per row: permutations x (features - 1) x background rows model evaluations, made in
a few large model calls.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

# Rows per model call (bounds the memory of one call).
CHUNK_ROWS = 50_000

Model = Callable[[pd.DataFrame], np.ndarray]  # frame -> (rows, outputs)


def permutation_shap(model: Model, frame: pd.DataFrame, background: pd.DataFrame,
                     permutations: int, seed: int = 0,
                     base: np.ndarray | None = None,
                     output: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(contributions (rows, outputs, features), base (outputs,)) for `frame`'s columns.

    `permutations` is rounded up to an even number (each order with its reverse)."""
    rows, features = frame.shape
    if base is None:
        base = model(background).mean(axis=0)
    if output is None:
        output = model(frame)
    outputs = output.shape[1]
    phi = np.zeros((rows, outputs, features))
    if rows == 0:
        return phi, base
    if features == 1:
        phi[:, :, 0] = output - base
        return phi, base
    pairs = max(1, (permutations + 1) // 2)
    rng = np.random.default_rng(seed)
    orders = np.empty((rows, 2 * pairs, features), dtype=np.int64)
    for r in range(rows):
        for p in range(pairs):
            order = rng.permutation(features)
            orders[r, 2 * p], orders[r, 2 * p + 1] = order, order[::-1]
    steps = features - 1  # the coalitions between "none" and "all"
    # mask[r, p, s, j]: feature j comes from the row after step s of order p
    rank = np.argsort(orders, axis=2)  # rank[r, p, j]: position of feature j in order p
    per_row = 2 * pairs * steps * len(background)
    chunk = max(1, CHUNK_ROWS // per_row)
    values = [frame[c].to_numpy() for c in frame.columns]
    fills = [background[c].to_numpy() for c in frame.columns]
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        n = stop - start
        mask = rank[start:stop, :, None, :] <= np.arange(steps)[None, None, :, None]
        mask = np.repeat(mask.reshape(-1, features), len(background), axis=0)
        source_row = np.repeat(np.arange(start, stop), 2 * pairs * steps * len(background))
        fill_row = np.tile(np.arange(len(background)), n * 2 * pairs * steps)
        columns = {}
        for j, name in enumerate(frame.columns):
            mine, theirs = values[j][source_row], fills[j][fill_row]
            if mine.dtype != theirs.dtype:
                mine, theirs = mine.astype(object), theirs.astype(object)
            columns[name] = np.where(mask[:, j], mine, theirs)
        masked = pd.DataFrame(columns).astype(frame.dtypes.to_dict())
        evaluated = model(masked).reshape(n, 2 * pairs, steps, len(background), outputs)
        path = np.concatenate([
            np.broadcast_to(base, (n, 2 * pairs, 1, outputs)),
            evaluated.mean(axis=3),
            np.broadcast_to(output[start:stop, None, None, :], (n, 2 * pairs, 1, outputs)),
        ], axis=2)
        changes = np.diff(path, axis=2)  # (n, orders, features, outputs), in order
        for p in range(2 * pairs):
            order = orders[start:stop, p]  # (n, features)
            np.add.at(phi[start:stop], (np.arange(n)[:, None], slice(None), order),
                      changes[:, p])
    phi /= 2 * pairs
    return phi, base
