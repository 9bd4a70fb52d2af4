"""Figures for MLflow and reports: calibration and feature importance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.evaluation import calibration_table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def calibration_figure(y: np.ndarray, curves: dict[str, np.ndarray], title: str):
    """Reliability diagram: mean predicted probability vs observed conversion rate per bin."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    top = 0.0
    for (name, p), marker in zip(curves.items(), ("o", "s", "^"), strict=False):
        table = calibration_table(y, p)
        ax.plot(table["predicted"], table["observed"], marker=marker, label=name)
        top = max(top, table["predicted"].max(), table["observed"].max())
    top = min(1.0, top * 1.1 + 0.01)
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted conversion probability (bin mean)")
    ax.set_ylabel("observed conversion rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.Series, top: int = 25):
    """Horizontal bars of total gain for the most important features."""
    plt = _pyplot()
    data = importance.head(top)[::-1]
    share = data / max(importance.sum(), 1e-12) * 100
    fig, ax = plt.subplots(figsize=(7, max(3, 0.28 * len(data) + 1)), dpi=110)
    ax.barh(data.index, share.to_numpy(), color="#3b6ea5")
    ax.set_xlabel("share of total gain (%)")
    ax.set_title(f"Top {len(data)} features by gain")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def close(fig) -> None:
    """Release a figure's memory."""
    _pyplot().close(fig)
