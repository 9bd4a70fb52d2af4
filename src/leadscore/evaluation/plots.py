"""Figures for MLflow and the report: calibration, gains, lift, distributions, importance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.modeling.metrics import calibration_table

MODEL_COLOUR = "#1f6feb"
RULES_COLOUR = "#d9822b"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _words(words):
    """The catalogue charts take their words from (English unless a page says otherwise)."""
    if words is not None:
        return words
    from leadscore.i18n import Words

    return Words("en")


def calibration_figure(y: np.ndarray, curves: dict[str, np.ndarray], title: str, words=None):
    """Reliability diagram: mean predicted probability vs observed conversion rate per bin."""
    tables = {k: calibration_table(y, p) for k, p in curves.items()}
    return calibration_tables_figure(tables, title, words)


def calibration_tables_figure(tables: dict[str, dict[str, np.ndarray]], title: str, words=None):
    """Reliability diagram from precomputed calibration tables (see `calibration_table`)."""
    w = _words(words)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    top = 0.0
    colours = (MODEL_COLOUR, RULES_COLOUR, "#6e7781")
    styles = zip(("o", "s", "^"), colours, strict=True)
    for (name, table), (marker, colour) in zip(tables.items(), styles, strict=False):
        if len(table["predicted"]) == 0:
            continue
        ax.plot(table["predicted"], table["observed"], marker=marker, label=name, color=colour)
        top = max(top, table["predicted"].max(), table["observed"].max())
    top = min(1.0, top * 1.1 + 0.01)
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1,
            label=w("chart.perfect"))  # fmt: skip
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(w("chart.predicted_axis"))
    ax.set_ylabel(w("chart.observed_axis"))
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.Series, top: int = 25, words=None):
    """Horizontal bars of total gain for the most important features."""
    w = _words(words)
    plt = _pyplot()
    data = importance.head(top)[::-1]
    share = data / max(importance.sum(), 1e-12) * 100
    fig, ax = plt.subplots(figsize=(7, max(3, 0.28 * len(data) + 1)), dpi=110)
    ax.barh(data.index, share.to_numpy(), color="#3b6ea5")
    ax.set_xlabel(w("chart.gain_share"))
    ax.set_title(w("chart.importance_title", n=len(data)))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def gains_figure(curves: dict[str, pd.DataFrame], marks: dict[str, float] | None = None,
                 words=None):  # fmt: skip
    """Cumulative gains: share of conversions found against share of leads worked."""
    w = _words(words)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.6), dpi=110)
    colours = {"model": MODEL_COLOUR, "rules": RULES_COLOUR}
    for name, curve in curves.items():
        ax.plot(
            curve["leads_share"] * 100,
            curve["captured_share"] * 100,
            label=_scorer_name(name, w),
            color=colours.get(name),
            linewidth=2,
        )
    ax.plot([0, 100], [0, 100], color="grey", linestyle="--", linewidth=1,
            label=w("chart.random"))  # fmt: skip
    for label, share in (marks or {}).items():
        ax.axvline(share * 100, color="#888", linestyle=":", linewidth=1)
        ax.text(share * 100 + 1, 4, label, fontsize=8, color="#555")
    ax.set_xlabel(w("chart.worked_axis"))
    ax.set_ylabel(w("chart.found_axis"))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_title(w("chart.gains_title"))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def lift_figure(tables: dict[str, pd.DataFrame], words=None):
    """Lift per decile: conversion rate of each tenth of leads over the average rate."""
    w = _words(words)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.6), dpi=110)
    names = list(tables)
    width = 0.8 / max(len(names), 1)
    colours = {"model": MODEL_COLOUR, "rules": RULES_COLOUR}
    for i, name in enumerate(names):
        t = tables[name]
        ax.bar(
            t["bin"] + (i - (len(names) - 1) / 2) * width,
            t["lift"],
            width=width,
            label=_scorer_name(name, w),
            color=colours.get(name),
        )
    ax.axhline(1, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(1, 11))
    ax.set_xlabel(w("chart.decile_axis"))
    ax.set_ylabel(w("chart.lift_axis"))
    ax.set_title(w("chart.lift_title"))
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def distribution_figure(y: np.ndarray, probability: np.ndarray, rule_score: np.ndarray,
                        words=None):  # fmt: skip
    """Score distributions of converted and not converted leads, for both scores."""
    w = _words(words)
    plt = _pyplot()
    y = np.asarray(y, dtype=bool)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    p = np.asarray(probability, dtype=float)
    top = float(np.quantile(p, 0.995)) if len(p) else 1.0
    bins = np.linspace(0, max(top, 1e-3), 40)
    for ax, values, b, title in (
        (axes[0], np.clip(p, 0, top), bins, w("chart.model_probability")),
        (axes[1], np.asarray(rule_score, float), 30, w("chart.rule_points")),
    ):
        ax.hist(values[~y], bins=b, density=True, alpha=0.55, label=w("chart.not_converted"),
                color="#8c8c8c")  # fmt: skip
        ax.hist(values[y], bins=b, density=True, alpha=0.6, label=w("chart.converted"),
                color="#2da44e")  # fmt: skip
        ax.set_title(title)
        ax.set_ylabel(w("chart.density"))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def over_time_figure(table: pd.DataFrame, words=None):
    """ROC-AUC and ECE per backtest fold (oldest left) for the model, baseline and rules.

    `table` is `Backtest.table()`: one row per fold and scorer, then the pooled rows.
    """
    w = _words(words)
    plt = _pyplot()
    folds = table[table["fold"] != "pooled"]
    order = list(dict.fromkeys(folds["fold"]))[::-1]  # oldest first
    labels = [folds.loc[folds["fold"] == f, "test_period"].iloc[0] for f in order]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    colours = _scorer_colours(list(dict.fromkeys(folds["scorer"])))
    for ax, metric, title in zip(
        axes, ("roc_auc", "ece"), (w("chart.auc_higher"), w("chart.ece_lower")), strict=True,
    ):  # fmt: skip
        for who, colour in colours.items():
            mine = folds[folds["scorer"] == who].set_index("fold").reindex(order)
            ax.plot(range(len(order)), mine[metric].to_numpy(float), marker="o",
                    label=_scorer_name(who, w), color=colour)  # fmt: skip
        ax.set_xticks(range(len(order)), [f"{f}\n{p}" for f, p in zip(order, labels,
                      strict=True)], fontsize=7)  # fmt: skip
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best")
    fig.suptitle(w("chart.over_time_title"))
    fig.tight_layout()
    return fig


#: Colours of the candidates after the first two (lightgbm blue, logistic grey).
_OTHER_COLOURS = ("#2da44e", "#8250df", "#bf3989", "#0a7ea4")


def _scorer_name(name: str, w) -> str:
    """A scorer as a legend names it: the model and the rules in words, candidates as named."""
    key = f"chart.scorer.{name}"
    return w(key) if key in w else name


def _scorer_colours(scorers: list[str]) -> dict[str, str]:
    fixed = {"lightgbm": MODEL_COLOUR, "logistic": "#6e7781", "rules": RULES_COLOUR}
    others = iter(_OTHER_COLOURS * 3)
    return {s: fixed.get(s) or next(others) for s in scorers}


def leaderboard_figure(
    table: pd.DataFrame,
    leaderboard: pd.DataFrame,
    metric: str = "log_loss",
    tolerance: float | None = None,
    words=None,
):
    """The candidates side by side: the pooled backtest metric that chose among them (the
    chosen one filled; shaded: within `tolerance` of the best, a tie the simpler wins),
    and each one's ROC-AUC per fold with its 95 % interval.

    `table` is `Backtest.table()`, `leaderboard` `Backtest.leaderboard()`.
    """
    w = _words(words)
    plt = _pyplot()
    names = list(leaderboard["candidate"])
    colours = _scorer_colours(names)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    values = leaderboard[metric].to_numpy(float)
    for i, row in enumerate(leaderboard.itertuples()):
        colour = colours[row.candidate]
        left.barh(i, values[i], color=colour if row.chosen else "white", edgecolor=colour,
                  hatch=None if row.chosen else "//")  # fmt: skip
        left.text(values[i], i, f" {values[i]:.4f}", va="center", fontsize=8)
    left.set_yticks(range(len(names)), [w("chart.chosen", name=n) if c else n for n, c in
                    zip(names, leaderboard["chosen"], strict=True)], fontsize=8)  # fmt: skip
    lo, hi = np.nanmin(values), np.nanmax(values)
    pad = max((hi - lo) * 0.6, abs(hi) * 0.01, 1e-4)
    left.set_xlim(lo - pad, hi + pad)
    if tolerance:
        best = lo if metric == "log_loss" else hi
        band = (best, best + tolerance) if metric == "log_loss" else (best - tolerance, best)
        left.axvspan(*band, color="#d0d7de", alpha=0.6, zorder=0, label=w("chart.tie"))
        left.legend(fontsize=7, loc="lower right")
    better = "lower" if metric == "log_loss" else "higher"
    left.set_title(w(f"chart.pooled_{better}", metric=w(f"report.metric.{metric}")))
    left.invert_yaxis()
    folds = table[(table["fold"] != "pooled") & table["scorer"].isin(names)]
    order = list(dict.fromkeys(folds["fold"]))[::-1]  # oldest first
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        mine = folds[folds["scorer"] == name].set_index("fold").reindex(order)
        auc = mine["roc_auc"].to_numpy(float)
        x = np.arange(len(order)) + (j - (len(names) - 1) / 2) * width
        err = None
        if "roc_auc_low" in mine and mine["roc_auc_low"].notna().all():
            err = np.vstack([auc - mine["roc_auc_low"].to_numpy(float),
                             mine["roc_auc_high"].to_numpy(float) - auc])  # fmt: skip
        right.errorbar(x, auc, yerr=err, fmt="o", color=colours[name], label=name, capsize=2,
                       markersize=4)  # fmt: skip
    right.set_xticks(range(len(order)), order, fontsize=8)
    right.set_title(w("chart.auc_per_fold"))
    right.grid(alpha=0.3)
    right.legend(fontsize=7, loc="best")
    fig.suptitle(w("chart.candidates_title"))
    fig.tight_layout()
    return fig


def rule_tiers_figure(tiers: pd.DataFrame, words=None):
    """Conversion rate per tier by rule points (bars), with the examples in each."""
    w = _words(words)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    rate = tiers["conversion_rate"].astype(float).fillna(0).to_numpy()
    bars = ax.bar(tiers["tier"], rate * 100, color=RULES_COLOUR)
    for bar, n in zip(bars, tiers["examples"], strict=True):
        ax.annotate(
            w("chart.examples", n=w.num(int(n))),
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
            color="#59636e",
        )
    ax.set_ylabel(w("chart.rate_axis"))
    ax.set_xlabel(w("chart.rule_tier_axis"))
    ax.set_title(w("chart.rule_tiers_title"))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def chart_fonts(language: str) -> dict:
    """matplotlib settings that draw `language` (Japanese needs a CJK font: the first of
    `i18n.CHART_FONTS` installed; without one the text stays text and the browser draws it)."""
    if language == "en":
        return {}
    from matplotlib import font_manager

    from leadscore.i18n import CHART_FONTS

    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = [name for name in CHART_FONTS if name in installed and name != "DejaVu Sans"]
    if not found:
        return {"svg.fonttype": "none", "font.family": ["sans-serif"],
                "font.sans-serif": list(CHART_FONTS)}  # fmt: skip
    return {"font.family": ["sans-serif"], "font.sans-serif": [*found, "DejaVu Sans"]}


def kpi_figure(months: pd.DataFrame, words) -> object:
    """The monthly KPI: MQL -> conversion of the rules' MQLs and of tier A with 95 %
    intervals (hollow markers, dashed: provisional months), and both volumes as bars."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    x = np.arange(len(months))
    labels = [words.month(m) for m in months["month"]]
    open_ = months["provisional"].to_numpy(bool)
    for key, colour, name, shift in (
        ("rule_mql", RULES_COLOUR, words("review.chart.rules"), -0.08),
        ("tier_a", MODEL_COLOUR, words("review.chart.tier_a"), 0.08),
    ):
        rate = months[f"{key}_rate"].to_numpy(float) * 100
        low = months[f"{key}_low"].to_numpy(float) * 100
        high = months[f"{key}_high"].to_numpy(float) * 100
        err = np.vstack([np.nan_to_num(rate - low), np.nan_to_num(high - rate)])
        xs = x + shift
        closed = ~open_
        left.plot(xs[closed], rate[closed], color=colour, marker="o", label=name)
        if open_.any():
            first = max(int(np.argmax(open_)) - 1, 0)
            left.plot(xs[first:], rate[first:], color=colour, linestyle="--", marker="o",
                      markerfacecolor="white")  # fmt: skip
        left.errorbar(xs, rate, yerr=err, fmt="none", ecolor=colour, alpha=0.5, capsize=2)
        volume = months[f"{key}s"].to_numpy(float)
        right.bar(x + shift * 2.5, volume, width=0.4, color=colour, label=name)
    if open_.any():
        left.axvspan(int(np.argmax(open_)) - 0.5, len(months) - 0.5, color="#d0d7de", alpha=0.35,
                     zorder=0, label=words("review.chart.provisional"))  # fmt: skip
        right.axvspan(int(np.argmax(open_)) - 0.5, len(months) - 0.5, color="#d0d7de",
                      alpha=0.35, zorder=0)  # fmt: skip
    for ax in (left, right):
        ax.set_xticks(x, labels, fontsize=7, rotation=45, ha="right")
        ax.grid(alpha=0.3, axis="y")
        ax.spines[["top", "right"]].set_visible(False)
    left.set_title(words("review.chart.rate_title"))
    left.set_ylabel(words("review.chart.rate_axis"))
    left.legend(fontsize=8, loc="best")
    right.set_title(words("review.chart.volume_title"))
    right.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def sla_figure(groups: dict, words) -> object:
    """Conversion rate by response time (bars, 95 % intervals) for each hand-over kind."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.8), dpi=110)
    colours = {"rules": RULES_COLOUR, "tier_a": MODEL_COLOUR}
    names = list(groups)
    labels = None
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        buckets = groups[name].buckets
        labels = [words(f"review.sla.bucket.{i}") for i in range(len(buckets))]
        rate = buckets["rate"].to_numpy(float) * 100
        err = np.vstack([np.nan_to_num(rate - buckets["low"].to_numpy(float) * 100),
                         np.nan_to_num(buckets["high"].to_numpy(float) * 100 - rate)])  # fmt: skip
        x = np.arange(len(buckets)) + (j - (len(names) - 1) / 2) * width
        ax.bar(x, np.nan_to_num(rate), width=width, color=colours.get(name, "#6e7781"),
               label=words(f"review.sla.group.{name}"), yerr=err, capsize=3,
               error_kw={"elinewidth": 1, "alpha": 0.7})  # fmt: skip
    ax.set_xticks(range(len(labels or [])), labels or [], fontsize=8)
    ax.set_ylabel(words("review.chart.rate_axis"))
    ax.set_title(words("review.sla.chart_title"))
    ax.grid(alpha=0.3, axis="y")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def to_svg(fig) -> str:
    """The figure as inline SVG markup (no XML prologue), for a self-contained page."""
    import io

    buffer = io.StringIO()
    # No metadata block: it carries links to RDF vocabularies, and nothing should point
    # outside the file.
    fig.savefig(
        buffer,
        format="svg",
        bbox_inches="tight",
        metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
    )
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def close(fig) -> None:
    """Release a figure's memory."""
    _pyplot().close(fig)
