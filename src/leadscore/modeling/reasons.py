"""Per-lead reasons in plain words, from the booster's per-feature contributions.

Features that describe one thing (the 7/30/90-day counts, recency and decayed count of
pricing-page views, say) are grouped into one *factor*; contributions are additive, so a
factor's effect is the sum of its features'. The top factors raising and lowering a lead's
probability are then described by the feature that drove each one, with the lead's own
values: "4 pricing-page views in the last 30 days", "free e-mail domain", "no activity for
63 days". Phrases are built column-wise, one feature at a time, never lead by lead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.data.features import FeatureBuilder

SEPARATOR = "; "

#: Nouns (singular, plural) for activity types and page categories (`page_<category>`).
DEFAULT_NOUNS: dict[str, tuple[str, str]] = {
    "page_view": ("page view", "page views"),
    "content_download": ("content download", "content downloads"),
    "webinar_registration": ("webinar registration", "webinar registrations"),
    "email_open": ("e-mail open", "e-mail opens"),
    "email_click": ("e-mail click", "e-mail clicks"),
    "demo_request": ("demo request", "demo requests"),
    "contact_request": ("contact request", "contact requests"),
    "form_submit": ("form submission", "form submissions"),
    "webinar_attendance": ("attended webinar", "attended webinars"),
    "email_unsubscribe": ("e-mail unsubscribe", "e-mail unsubscribes"),
    "page_pricing": ("pricing-page view", "pricing-page views"),
    "page_careers": ("careers-page view", "careers-page views"),
    "page_case_studies": ("case-study view", "case-study views"),
    "page_product": ("product-page view", "product-page views"),
    "page_docs": ("documentation view", "documentation views"),
    "page_blog": ("blog-post view", "blog-post views"),
    "page_home": ("home-page view", "home-page views"),
    "all": ("activity", "activities"),
}
DEFAULT_FIELD_LABELS = {
    "industry": "industry",
    "country": "country",
    "lead_source": "lead source",
    "employees": "company size (employees)",
}
SENIORITY_WORDS = {
    "c_level": "C-level",
    "vp": "VP",
    "director": "director",
    "manager": "manager",
    "individual": "individual contributor",
    "intern": "intern",
    "student": "student",
}
DEPARTMENT_WORDS = {"it": "IT", "hr": "HR", "r_and_d": "R&D"}
EMAIL_KIND_PHRASES = {
    "corporate": "corporate e-mail domain",
    "free_mail": "free e-mail domain",
    "student": "student e-mail domain",
    "competitor": "competitor e-mail domain",
    "unknown": "no usable e-mail domain",
}


@dataclass(frozen=True)
class Factor:
    """One thing a marketer would name, and the model features that describe it."""

    key: str
    features: tuple[str, ...]


def factors(builder: FeatureBuilder) -> list[Factor]:
    """The factors of a fitted feature builder, in the builder's feature order."""
    spec = builder.behaviour
    groups: dict[str, list[str]] = {}
    by_key = {}
    for key in spec.keys():  # noqa: SIM118 (a BehaviourSpec, not a dict)
        for name in [f"n_{key}_{w}d" for w in spec.windows_days]:
            by_key[name] = key
        by_key[f"days_since_{key}"] = key
        by_key[f"decayed_{key}"] = key
    for name in builder.feature_names_:
        if name in by_key:
            group = f"activity:{by_key[name]}"
        elif name.startswith(("n_all_", "active_days_")) or name == "decayed_all":
            group = "engagement"
        elif name == "days_since_any":
            group = "recency"
        elif name == "trend_7d_vs_prev_21d":
            group = "trend"
        elif name == "lead_age_days":
            group = "lead_age"
        else:
            group = f"field:{name}"
        groups.setdefault(group, []).append(name)
    return [Factor(k, tuple(v)) for k, v in groups.items()]


class Phrases:
    """Builds phrases for one feature over many leads, with configurable labels."""

    def __init__(
        self, builder: FeatureBuilder, rows: pd.DataFrame, labels: dict[str, str] | None = None
    ) -> None:
        self.builder = builder
        self.rows = rows
        self.labels = dict(labels or {})
        self.spec = builder.behaviour
        self._attributes: pd.DataFrame | None = None

    def attributes(self) -> pd.DataFrame:
        """Categorical attributes as the model sees them (derived once, on first use)."""
        if self._attributes is None:
            self._attributes = self.builder._attribute_frame(self.rows)
        return self._attributes

    def noun(self, key: str) -> tuple[str, str]:
        if key in self.labels:
            singular, _, plural = self.labels[key].partition("|")
            return singular.strip(), (plural.strip() or _plural(singular.strip()))
        if key in DEFAULT_NOUNS:
            return DEFAULT_NOUNS[key]
        if key.startswith("page_") and key[5:] in self.spec.page_categories:
            words = key[5:].replace("_", " ")
            return f"{words} page view", f"{words} page views"
        words = key.replace("_", " ")
        return f"{words} event", f"{words} events"

    def field_label(self, name: str) -> str:
        return self.labels.get(name, DEFAULT_FIELD_LABELS.get(name, name.replace("_", " ")))

    # -- building blocks, each vectorised over rows --------------------------------------

    @staticmethod
    def _int_text(values: np.ndarray) -> pd.Series:
        return pd.Series(np.round(values).astype(np.int64)).map("{:,}".format)

    def _counted(
        self, key: str, counts: np.ndarray, window: int, lowering: bool = False
    ) -> np.ndarray:
        singular, plural = self.noun(key)
        counts = np.nan_to_num(np.asarray(counts, dtype=float))
        # As a reason down, a count is "only" that many: fewer than leads like this one have.
        text = ("only " if lowering else "") + self._int_text(counts)
        text = text + " " + np.where(np.round(counts) == 1, singular, plural)
        said = (text + f" in the last {window} days").to_numpy(dtype=object)
        none = f"no {plural} in the last {window} days"
        return np.where(counts > 0, said, none)

    @staticmethod
    def _days_ago(days: np.ndarray) -> pd.Series:
        d = np.round(np.nan_to_num(np.asarray(days, dtype=float)))
        text = pd.Series(d.astype(np.int64)).map("{:,}".format) + " days ago"
        text = text.where(d != 1, "1 day ago")
        return text.where(d >= 1, "less than a day ago")

    def _recent_count(self, key: str, rows: pd.DataFrame, lowering: bool) -> np.ndarray:
        """Count in the shortest window that has any activity; for decayed features."""
        windows = self.spec.windows_days
        chosen = np.full(len(rows), f"no {self.noun(key)[1]} in the last {max(windows)} days")
        chosen = chosen.astype(object)
        for w in sorted(windows, reverse=True):
            counts = rows[f"n_{key}_{w}d"].to_numpy(dtype=float)
            chosen = np.where(counts > 0, self._counted(key, counts, w, lowering), chosen)
        return chosen

    # -- one feature ----------------------------------------------------------------------

    def describe(self, feature: str, positions: np.ndarray, lowering: bool = False) -> np.ndarray:
        """Plain-words phrase of `feature` for the rows at `positions`.

        `lowering`: the phrase explains a lower probability (counts then read "only 1 …").
        """
        spec = self.spec
        if feature in self.builder.categories_:
            return self._category(feature, positions)
        rows = self.rows.iloc[positions]
        if feature in self.builder.numeric:
            values = pd.to_numeric(rows[feature], errors="coerce").to_numpy(dtype=float)
            label = self.field_label(feature)
            shown = pd.Series(values).map(lambda v: f"{v:,.0f}" if abs(v) >= 10 else f"{v:,.3g}")
            said = (label + ": " + shown).to_numpy(dtype=object)
            return np.where(np.isnan(values), f"{label} not given", said)
        match = re.fullmatch(r"n_(.+)_(\d+)d", feature)
        if match:
            key = match.group(1)
            counts = rows[feature].to_numpy(dtype=float)
            return self._counted(key, counts, int(match.group(2)), lowering)
        if feature.startswith("days_since_") and feature != "days_since_any":
            key = feature[len("days_since_") :]
            days = rows[feature].to_numpy(dtype=float)
            singular, plural = self.noun(key)
            said = ("last " + singular + " " + self._days_ago(days)).to_numpy(dtype=object)
            return np.where(
                np.isnan(days), f"no {plural} in the last {spec.recency_cap_days} days", said
            )
        if feature.startswith("decayed_"):
            return self._recent_count(feature[len("decayed_") :], rows, lowering)
        if feature.startswith("active_days_"):
            window = feature[len("active_days_") : -1]
            days = rows[feature].to_numpy(dtype=float)
            text = ("active on only " if lowering else "active on ") + self._int_text(days)
            text = text + np.where(days == 1, " day", " days")
            said = (text + f" in the last {window} days").to_numpy(dtype=object)
            return np.where(days > 0, said, f"no activity in the last {window} days")
        if feature == "days_since_any":
            days = rows[feature].to_numpy(dtype=float)
            quiet = ("no activity for " + self._days_ago(days).str.replace(" ago", "")).to_numpy(
                dtype=object
            )
            recent = ("last activity " + self._days_ago(days)).to_numpy(dtype=object)
            out = np.where(np.nan_to_num(days) >= 30, quiet, recent)
            return np.where(
                np.isnan(days), f"no activity in the last {spec.recency_cap_days} days", out
            )
        if feature == "trend_7d_vs_prev_21d":
            trend = rows[feature].to_numpy(dtype=float)
            quiet = np.nan_to_num(rows["days_since_any"].to_numpy(dtype=float), nan=np.inf) >= 28
            out = np.where(
                trend >= 1.25,
                "activity picking up in the last 7 days",
                np.where(
                    trend <= 0.8,
                    "activity slowing down in the last 7 days",
                    "steady activity over 4 weeks",
                ),
            ).astype(object)
            return np.where(quiet, "no activity in the last 4 weeks", out)
        if feature == "lead_age_days":
            days = rows[feature].to_numpy(dtype=float)
            return ("lead created " + self._days_ago(days)).to_numpy(dtype=object)
        return np.full(len(rows), feature.replace("_", " "), dtype=object)

    def _category(self, feature: str, positions: np.ndarray) -> np.ndarray:
        values = self.attributes()[feature].iloc[positions].astype("str")
        if feature == "email_domain_kind":
            return (
                values.map(EMAIL_KIND_PHRASES)
                .fillna("no usable e-mail domain")
                .to_numpy(dtype=object)
            )
        if feature == "seniority":
            words = values.map(SENIORITY_WORDS)
            said = ("job title says " + words).to_numpy(dtype=object)
            return np.where(words.isna(), "no seniority in the job title", said)
        if feature == "department":
            words = values.map(lambda v: DEPARTMENT_WORDS.get(v, v.replace("_", " ")))
            said = ("department: " + words).to_numpy(dtype=object)
            return np.where(
                values.isna() | values.eq("unknown"), "no department in the job title", said
            )
        # Describe what the model saw: a value it did not learn (rare or new) was "other"
        # to it, and a rare raw value (a company, a city) must not reach a published reason.
        label = self.field_label(feature)
        known = values.isin(self.builder.categories_.get(feature, []))
        missing = values.isna() | values.eq("")
        said = (label + ": " + values.str.replace("_", " ")).to_numpy(dtype=object)
        said = np.where(known, said, f"less common {label}")
        return np.where(missing, f"{label} not given", said)


def _plural(word: str) -> str:
    """English plural of a label's last word: activity -> activities, box -> boxes."""
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", word):
        return word + "es"
    return word + "s"


def _top(values: np.ndarray, k: int, min_effect: float) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of the k largest values per row, and whether each exceeds min_effect."""
    k = min(k, values.shape[1])
    idx = np.argsort(-values, axis=1, kind="stable")[:, :k]
    big = np.take_along_axis(values, idx, axis=1) > min_effect
    return idx, big


def explain(
    rows: pd.DataFrame,
    contributions: pd.DataFrame,
    builder: FeatureBuilder,
    labels: dict[str, str] | None = None,
    top: int = 3,
    min_effect: float = 0.02,
) -> pd.DataFrame:
    """`reasons_up` and `reasons_down`: up to `top` phrases each, joined by '; '.

    `contributions` are the booster's per-feature contributions (log-odds, aligned with
    `rows`); a factor counts only when it moves the log-odds by more than `min_effect`.
    """
    groups = factors(builder)
    columns = list(contributions.columns)
    contrib = contributions.to_numpy(dtype=float)
    member = np.zeros((len(columns), len(groups)))
    position = {name: i for i, name in enumerate(columns)}
    for j, group in enumerate(groups):
        for name in group.features:
            member[position[name], j] = 1.0
    effect = contrib @ member
    phrases = Phrases(builder, rows, labels)
    out = {}
    for direction, sign in (("reasons_up", 1.0), ("reasons_down", -1.0)):
        idx, big = _top(sign * effect, top, min_effect)
        slots = []
        for slot in range(idx.shape[1]):
            text = np.full(len(rows), "", dtype=object)
            for j, group in enumerate(groups):
                chosen = np.flatnonzero(big[:, slot] & (idx[:, slot] == j))
                if len(chosen) == 0:
                    continue
                cols = [position[name] for name in group.features]
                # The feature that pushed hardest in this direction names the reason.
                driver = np.argmax(sign * contrib[np.ix_(chosen, cols)], axis=1)
                for f in np.unique(driver):
                    picked = chosen[driver == f]
                    text[picked] = phrases.describe(group.features[f], picked, lowering=sign < 0)
            slots.append(text)
        joined = pd.Series(np.full(len(rows), "", dtype=object))
        for text in slots:
            nonempty = text != ""
            glue = np.where((joined != "").to_numpy() & nonempty, SEPARATOR, "")
            joined = joined + glue + text
        out[direction] = pd.array(joined.to_numpy(dtype=object), dtype="str")
    return pd.DataFrame(out, index=rows.index)
