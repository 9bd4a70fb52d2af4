"""Fast per-feature contributions of a LightGBM booster: path (Saabas) attributions.

Each tree's root-to-leaf paths are walked once, when the table is built: each split on a
path credits the change it makes to the node value, ``value(child) - value(node)``, to the
feature it splits on (a categorical split is just a split on its feature). A leaf's value
is its ``leaf_value``; the root values summed over the trees are the bias,
``expected_value``. The changes along a path telescope, so for every row::

    expected_value + contributions.sum(axis=1) == raw score (log-odds)

exactly, up to floating-point rounding, as with TreeSHAP (``pred_contrib``). A split's
effect goes to its own feature only, so the attributions depend on the order of the splits
in a tree where TreeSHAP averages over orders; they are linear in the trees, so the
per-leaf contributions are precomputed once per model and a row's contributions are the
sum, over the trees, of its leaves' entries.

Node values (`node_values`):

- ``"cover"`` (default): the mean of the tree's output over the training rows that reached
  the node (its leaves' values weighted by ``leaf_count``), the node values TreeSHAP and
  the shap package's Saabas use. The bias is then TreeSHAP's expected value, and on the
  generated data the reasons agree far better with TreeSHAP's (see benchmarks/reasons.py).
- ``"internal"``: LightGBM's ``internal_value``, the Newton step the node would have output
  as a leaf (hessian-weighted, regularised). LightGBM stores it with 6 significant digits,
  in its model text too; the sum is exact regardless, as the changes telescope.

Either way the first tree carries LightGBM's initial score (``boost_from_average`` adds it
to the first tree's values): it ends up in the bias, not in any feature.

Scoring a matrix is LightGBM's own leaf prediction (``pred_leaf``, about the cost of a raw
predict) plus that sum, in chunks of rows to bound memory. Each leaf's entry has only as
many non-zero features as its path has splits, so the sum runs over (feature, tree) pairs,
one vectorised lookup of a few leaf values each, not over dense rows of the table.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

#: Leaf indices per chunk (rows x trees): bounds the memory of one chunk to ~16 bytes each
#: (LightGBM's float64 leaf buffer, its int32 copy, and the transposed copy).
CHUNK_CELLS = 8_000_000


def _is_split(node: dict[str, Any]) -> bool:
    return "split_index" in node


def _node_values(root: dict[str, Any], node_values: str) -> dict[int, float]:
    """Value of every node of a dumped tree, by `id(node)`."""
    order, stack = [], [root]
    while stack:  # pre-order, without recursion (a tree may be deep)
        node = stack.pop()
        order.append(node)
        if _is_split(node):
            stack += [node["left_child"], node["right_child"]]
    value: dict[int, float] = {}
    mass: dict[int, tuple[float, float]] = {}
    for node in reversed(order):  # children before their parent
        if not _is_split(node):
            if "leaf_coeff" in node:
                raise ValueError("path attributions do not support linear trees")
            v, w = float(node["leaf_value"]), float(node.get("leaf_count", 0))
            value[id(node)], mass[id(node)] = v, (w * v, w)
            continue
        (ls, lw), (rs, rw) = mass[id(node["left_child"])], mass[id(node["right_child"])]
        mass[id(node)] = (ls + rs, lw + rw)
        if node_values == "cover" and lw + rw > 0:
            value[id(node)] = (ls + rs) / (lw + rw)
        else:
            value[id(node)] = float(node["internal_value"])
    return value


@dataclass(frozen=True, eq=False)
class PathAttributions:
    """Per-leaf path contributions of a binary LightGBM model, ready to sum per row.

    Build with `from_booster`. The table is held as (feature, tree) pairs: `pair_feature`,
    `pair_tree` and `pair_values[p, leaf]`, the contribution to `pair_feature[p]` of a row
    that lands in `leaf` of tree `pair_tree[p]`, sorted by feature.
    """

    booster: lgb.Booster = field(repr=False)
    num_iteration: int
    feature_names: tuple[str, ...]
    expected_value: float
    node_values: str
    pair_feature: np.ndarray = field(repr=False)
    pair_tree: np.ndarray = field(repr=False)
    pair_values: np.ndarray = field(repr=False)

    @classmethod
    def from_booster(
        cls,
        booster: lgb.Booster,
        num_iteration: int | None = None,
        node_values: Literal["cover", "internal"] = "cover",
    ) -> PathAttributions:
        """Precompute the per-leaf table of the first `num_iteration` trees.

        `None` means the booster's best iteration if it has one, else all trees; the same
        number is then passed to `predict`, so leaves and table always match.
        """
        if node_values not in ("cover", "internal"):
            raise ValueError(f"node_values must be 'cover' or 'internal', not {node_values!r}")
        if num_iteration is None or num_iteration <= 0:
            best = booster.best_iteration
            num_iteration = best if best and best > 0 else booster.current_iteration()
        dump = booster.dump_model(num_iteration=num_iteration)
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise ValueError("path attributions need one tree per iteration (binary, regression)")
        if dump.get("average_output"):
            raise ValueError("path attributions do not support averaged output (random forest)")
        features: list[int] = []
        trees: list[int] = []
        values: list[np.ndarray] = []
        expected = 0.0
        width = max((info["num_leaves"] for info in dump["tree_info"]), default=1)
        for t, info in enumerate(dump["tree_info"]):
            root = info["tree_structure"]
            value = _node_values(root, node_values)
            expected += value[id(root)]
            # leaf index -> {feature: contribution}; a path has few splits.
            per_leaf: dict[int, dict[int, float]] = {}
            stack: list[tuple[dict[str, Any], dict[int, float]]] = [(root, {})]
            while stack:
                node, path = stack.pop()
                if not _is_split(node):
                    per_leaf[int(node.get("leaf_index", 0))] = path  # one leaf: no index
                    continue
                feature, here = int(node["split_feature"]), value[id(node)]
                for child in (node["left_child"], node["right_child"]):
                    step = dict(path)
                    step[feature] = step.get(feature, 0.0) + (value[id(child)] - here)
                    stack.append((child, step))
            for f in sorted({f for path in per_leaf.values() for f in path}):
                row = np.zeros(width)
                for leaf, path in per_leaf.items():
                    row[leaf] = path.get(f, 0.0)
                features.append(f)
                trees.append(t)
                values.append(row)
        order = np.argsort(np.asarray(features, dtype=np.int64), kind="stable")
        return cls(
            booster=booster,
            num_iteration=int(num_iteration),
            feature_names=tuple(dump["feature_names"]),
            expected_value=expected,
            node_values=node_values,
            pair_feature=np.asarray(features, dtype=np.int64)[order],
            pair_tree=np.asarray(trees, dtype=np.int64)[order],
            pair_values=(np.vstack(values) if values else np.zeros((0, width)))[order],
        )

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def from_leaves(self, leaves: np.ndarray) -> np.ndarray:
        """Contributions (rows x features) of rows whose leaf indices (rows x trees) are given."""
        leaves = np.asarray(leaves)
        by_tree = np.ascontiguousarray(leaves.T)
        n = leaves.shape[0]
        out = np.zeros((self.n_features, n))  # feature-major: each addition is contiguous
        buffer = np.empty(n)
        for f, t, values in zip(self.pair_feature, self.pair_tree, self.pair_values, strict=True):
            np.take(values, by_tree[t], out=buffer)
            out[f] += buffer
        return out.T

    def leaves(self, matrix: pd.DataFrame | np.ndarray, num_threads: int = 0) -> np.ndarray:
        """LightGBM's leaf index of every row in every tree (rows x trees, int32)."""
        return self.booster.predict(
            matrix, pred_leaf=True, num_iteration=self.num_iteration, num_threads=num_threads
        )

    def contributions(
        self,
        matrix: pd.DataFrame | np.ndarray,
        num_threads: int = 0,
        chunk_rows: int | None = None,
    ) -> np.ndarray:
        """Per-feature contributions (rows x features, log-odds) of the model matrix `matrix`.

        `matrix` is what the booster predicts on (the feature builder's output). Rows are
        processed in chunks (`chunk_rows`, by default about `CHUNK_CELLS` leaf indices
        each); the sum of one chunk overlaps LightGBM's leaf prediction of the next.
        `num_threads` goes to LightGBM (0: its default, every core).
        """
        n = matrix.shape[0]
        out = np.empty((n, self.n_features))
        if n == 0:
            return out
        n_trees = max(1, min(self.num_iteration, self.booster.num_trees()))
        step = max(1, chunk_rows or CHUNK_CELLS // n_trees)

        def take(start: int) -> Any:
            stop = min(n, start + step)
            return (
                matrix.iloc[start:stop] if isinstance(matrix, pd.DataFrame) else matrix[start:stop]
            )

        def fill(start: int, leaves: np.ndarray) -> None:
            out[start : start + len(leaves)] = self.from_leaves(leaves)

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future | None = None
            for start in range(0, n, step):
                leaves = self.leaves(take(start), num_threads)
                if pending is not None:
                    pending.result()
                pending = pool.submit(fill, start, leaves)
            if pending is not None:
                pending.result()
        return out
