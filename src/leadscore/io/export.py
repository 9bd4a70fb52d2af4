"""CRM write-back files: the latest published scores in the column layout a CRM imports.

`salesforce` and `hubspot` name their columns after the custom fields (properties) the
README tells users to create; both import wizards let you map a column to another field.
`csv` keeps leadscore's own column names. One row per lead; by default only the leads of
the newest published run (the ones open now), so a closed lead's old score is never written
back over what the CRM has.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.errors import DataError
from leadscore.io.changes import reasons
from leadscore.io.publish import read_scores

FORMATS = ("salesforce", "hubspot", "csv")
#: Salesforce's Text Area holds 255 characters; longer reasons are cut at a reason's end.
SALESFORCE_TEXT = 255


def _percent(p: Any) -> str:
    return "" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{100 * p:.1f}"


def _number(v: Any, digits: int = 1) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.{digits}f}"


def _boolean(v: Any) -> str:
    return "true" if bool(v) else "false"


def _utc(v: Any) -> str:
    return pd.Timestamp(v).strftime("%Y-%m-%dT%H:%M:%SZ")


def _top_reasons(text: Any, limit: int | None = None) -> str:
    """The reasons raising the score, most important first, joined; cut whole at `limit`."""
    out = ""
    for reason in reasons(text):
        joined = f"{out}; {reason}" if out else reason
        if limit is not None and len(joined) > limit:
            break
        out = joined
    return out


def _model(row: dict) -> str:
    version = row.get("model_version")
    if version is None or (isinstance(version, float) and math.isnan(version)):
        return "rules"
    return f"{row['model_name']} v{version}"


#: Column name -> value of a published row, per format (the README's field mapping).
LAYOUTS: dict[str, dict[str, Callable[[dict], str]]] = {
    "salesforce": {
        "Id": lambda r: str(r["lead_id"]),
        "Leadscore_Probability__c": lambda r: _percent(r["conversion_probability"]),
        "Leadscore_Percentile__c": lambda r: _number(r["percentile"]),
        "Leadscore_Tier__c": lambda r: str(r["tier"]),
        "Leadscore_Reasons__c": lambda r: _top_reasons(r["reasons_up"], SALESFORCE_TEXT),
        "Leadscore_Rule_Score__c": lambda r: _number(r["rule_score"], 0),
        "Leadscore_MQL__c": lambda r: _boolean(r["is_mql"]),
        "Leadscore_Scored_At__c": lambda r: _utc(r["scored_at"]),
        "Leadscore_Model__c": _model,
    },
    "hubspot": {
        "Record ID": lambda r: str(r["lead_id"]),
        "leadscore_probability": lambda r: _percent(r["conversion_probability"]),
        "leadscore_percentile": lambda r: _number(r["percentile"]),
        "leadscore_tier": lambda r: str(r["tier"]),
        "leadscore_reasons": lambda r: _top_reasons(r["reasons_up"]),
        "leadscore_rule_score": lambda r: _number(r["rule_score"], 0),
        "leadscore_mql": lambda r: _boolean(r["is_mql"]),
        "leadscore_scored_at": lambda r: _utc(r["scored_at"]),
        "leadscore_model": _model,
    },
    "csv": {
        "lead_id": lambda r: str(r["lead_id"]),
        "as_of_date": lambda r: str(pd.Timestamp(r["as_of_date"]).date()),
        "conversion_probability": lambda r: _number(r["conversion_probability"], 6),
        "percentile": lambda r: _number(r["percentile"], 2),
        "tier": lambda r: str(r["tier"]),
        "rule_score": lambda r: _number(r["rule_score"], 1),
        "is_mql": lambda r: _boolean(r["is_mql"]),
        "reasons_up": lambda r: _top_reasons(r["reasons_up"]),
        "reasons_down": lambda r: _top_reasons(r["reasons_down"]),
        "rules_fired": lambda r: ", ".join(reasons(r["rules_fired"], ",")),
        "model": _model,
        "scored_at": lambda r: _utc(r["scored_at"]),
    },
}


def export_scores(
    uri: str, table: str, fmt: str, path: Path, every_lead: bool = False
) -> tuple[int, str]:
    """Write the file (atomically); returns the rows written and the newest as-of date."""
    if fmt not in LAYOUTS:
        raise DataError(f"unknown export format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    scores = read_scores(uri, table, latest=not every_lead)
    if scores.empty:
        raise DataError(
            f"table '{table}' holds no published scores to export",
            "run `leadscore score` first; nothing was written",
        )
    scores = scores.sort_values(["lead_id"], kind="stable")
    layout = LAYOUTS[fmt]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(layout)
        for row in scores.to_dict("records"):
            writer.writerow([value(row) for value in layout.values()])
    tmp.replace(path)
    newest = str(pd.to_datetime(scores["as_of_date"]).max().date())
    return len(scores), newest
