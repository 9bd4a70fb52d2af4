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


class Vocabulary:
    """The words reasons are made of, in one language: the catalogue's `reasons.*` keys
    (`i18n/<language>.yaml`) and the project's `report.labels`.

    `say` fills a phrase for one lead; `fill` the same phrase for many at once (each field a
    scalar or an array), so the batch and the single-lead path print the same text.
    """

    def __init__(self, language: str = "en", labels: dict[str, str] | None = None) -> None:
        from leadscore.i18n import Words

        self.words = Words(language)
        self.language = language
        self.labels = dict(labels or {})

    def say(self, key: str, /, **fields) -> str:
        return self.words(f"reasons.{key}", **fields)

    def fill(self, key: str, size: int, /, **fields) -> np.ndarray:
        """`say` over `size` leads: fields are scalars or arrays of `size` texts."""
        template = self.words(f"reasons.{key}")
        out = np.full(size, "", dtype=object)
        for i, piece in enumerate(re.split(r"\{(\w+)\}", template)):
            if i % 2 == 0:
                if piece:
                    out = out + piece
            else:
                value = fields[piece]
                out = out + (value if isinstance(value, str) else np.asarray(value, dtype=object))
        return out

    def _pair(self, text: str) -> tuple[str, str]:
        singular, _, plural = text.partition("|")
        singular, plural = singular.strip(), plural.strip()
        if plural:
            return singular, plural
        # Only English nouns change in the plural (Japanese ones do not).
        return singular, (_plural(singular) if self.language == "en" else singular)

    def noun(self, key: str, page_categories=()) -> tuple[str, str]:
        """(singular, plural) of an activity type or `page_<category>`."""
        if key in self.labels:
            return self._pair(self.labels[key])
        if f"reasons.noun.{key}" in self.words:
            return self._pair(self.say(f"noun.{key}"))
        if key.startswith("page_") and key[5:] in page_categories:
            return self._pair(self.say("noun_page", words=key[5:].replace("_", " ")))
        return self._pair(self.say("noun_event", words=key.replace("_", " ")))

    def field_label(self, name: str) -> str:
        if name in self.labels:
            return self.labels[name]
        if f"reasons.field.{name}" in self.words:
            return self.say(f"field.{name}")
        return name.replace("_", " ")

    def email_kind(self, kind) -> str:
        key = f"reasons.email.{kind}"
        return self.words(key) if key in self.words else self.say("email.unknown")

    def seniority(self, level) -> str | None:
        """The words of a seniority level; None when the title gave none."""
        key = f"reasons.seniority.{level}"
        return self.words(key) if level is not None and key in self.words else None

    def department(self, department: str) -> str:
        key = f"reasons.departments.{department}"
        return self.words(key) if key in self.words else department.replace("_", " ")

    def days_ago(self, days: float) -> str:
        d = float(np.round(0.0 if np.isnan(days) else days))
        if d < 1:
            return self.say("ago_today")
        if d == 1:
            return self.say("ago_one")
        return self.say("ago", n=f"{int(d):,}")

    def days_ago_all(self, days: np.ndarray) -> np.ndarray:
        d = np.round(np.nan_to_num(np.asarray(days, dtype=float)))
        text = self.fill("ago", len(d), n=_int_texts(d))
        text = np.where(d == 1, self.say("ago_one"), text)
        return np.where(d >= 1, text, self.say("ago_today"))

    def counted(self, noun: tuple[str, str], count: float, window: int, lowering: bool) -> str:
        count = 0.0 if np.isnan(count) else count
        if not count > 0:
            return self.say("none", nouns=noun[1], window=window)
        word = noun[0] if round(count) == 1 else noun[1]
        key = "count_only" if lowering else "count"
        return self.say(key, count=f"{int(np.round(count)):,}", noun=word, window=window)

    def counted_all(
        self, noun: tuple[str, str], counts: np.ndarray, window: int, lowering: bool
    ) -> np.ndarray:
        counts = np.nan_to_num(np.asarray(counts, dtype=float))
        words = np.where(np.round(counts) == 1, noun[0], noun[1]).astype(object)
        key = "count_only" if lowering else "count"
        said = self.fill(key, len(counts), count=_int_texts(counts), noun=words, window=str(window))
        return np.where(counts > 0, said, self.say("none", nouns=noun[1], window=window))

    def active(self, days: float, window: str, lowering: bool) -> str:
        if not days > 0:
            return self.say("no_activity", window=window)
        key = ("active_only" if lowering else "active") + ("_one" if days == 1 else "")
        return self.say(key, n=f"{int(np.round(days)):,}", window=window)

    def active_all(self, days: np.ndarray, window: str, lowering: bool) -> np.ndarray:
        days = np.asarray(days, dtype=float)
        key = "active_only" if lowering else "active"
        many = self.fill(key, len(days), n=_int_texts(days), window=window)
        said = np.where(days == 1, self.say(key + "_one", window=window), many)
        return np.where(days > 0, said, self.say("no_activity", window=window))

    def number(self, label: str, value: float) -> str:
        if np.isnan(value):
            return self.say("not_given", label=label)
        shown = f"{value:,.0f}" if abs(value) >= 10 else f"{value:,.3g}"
        return self.say("value", label=label, value=shown)


def _int_texts(values: np.ndarray) -> np.ndarray:
    """Whole numbers with thousands separators, as texts."""
    ints = np.round(np.nan_to_num(np.asarray(values, dtype=float))).astype(np.int64)
    # Few distinct counts among many leads: format each once.
    distinct, at = np.unique(ints, return_inverse=True)
    return np.array([f"{v:,}" for v in distinct.tolist()], dtype=object)[at.reshape(-1)]


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
        elif name.startswith("account_"):
            group = "account"
        else:
            group = f"field:{name}"
        groups.setdefault(group, []).append(name)
    return [Factor(k, tuple(v)) for k, v in groups.items()]


class Phrases:
    """Builds phrases for one feature over many leads, in the vocabulary's language."""

    def __init__(
        self,
        builder: FeatureBuilder,
        rows: pd.DataFrame,
        labels: dict[str, str] | None = None,
        language: str = "en",
    ) -> None:
        self.builder = builder
        self.rows = rows
        self.vocabulary = Vocabulary(language, labels)
        self.spec = builder.behaviour
        self._attributes: pd.DataFrame | None = None

    def attributes(self) -> pd.DataFrame:
        """Categorical attributes as the model sees them (derived once, on first use)."""
        if self._attributes is None:
            self._attributes = self.builder._attribute_frame(self.rows)
        return self._attributes

    def noun(self, key: str) -> tuple[str, str]:
        return self.vocabulary.noun(key, self.spec.page_categories)

    def field_label(self, name: str) -> str:
        return self.vocabulary.field_label(name)

    def _recent_count(self, key: str, rows: pd.DataFrame, lowering: bool) -> np.ndarray:
        """Count in the shortest window that has any activity; for decayed features."""
        v, noun = self.vocabulary, self.noun(key)
        windows = self.spec.windows_days
        chosen = np.full(len(rows), v.say("none", nouns=noun[1], window=max(windows)))
        chosen = chosen.astype(object)
        for w in sorted(windows, reverse=True):
            counts = rows[f"n_{key}_{w}d"].to_numpy(dtype=float)
            chosen = np.where(counts > 0, v.counted_all(noun, counts, w, lowering), chosen)
        return chosen

    # -- one feature ----------------------------------------------------------------------

    def describe(self, feature: str, positions: np.ndarray, lowering: bool = False) -> np.ndarray:
        """Plain-words phrase of `feature` for the rows at `positions`.

        `lowering`: the phrase explains a lower probability (counts then read "only 1 …").
        """
        spec, v = self.spec, self.vocabulary
        if feature in self.builder.categories_:
            return self._category(feature, positions)
        rows = self.rows.iloc[positions]
        n = len(rows)
        if feature in self.builder.numeric:
            values = pd.to_numeric(rows[feature], errors="coerce").to_numpy(dtype=float)
            label = self.field_label(feature)
            shown = pd.Series(values).map(lambda x: f"{x:,.0f}" if abs(x) >= 10 else f"{x:,.3g}")
            said = v.fill("value", n, label=label, value=shown.to_numpy(dtype=object))
            return np.where(np.isnan(values), v.say("not_given", label=label), said)
        match = re.fullmatch(r"n_(.+)_(\d+)d", feature)
        if match:
            counts = rows[feature].to_numpy(dtype=float)
            noun = self.noun(match.group(1))
            return v.counted_all(noun, counts, int(match.group(2)), lowering)
        if feature.startswith("days_since_") and feature != "days_since_any":
            days = rows[feature].to_numpy(dtype=float)
            singular, plural = self.noun(feature[len("days_since_") :])
            said = v.fill("last", n, noun=singular, ago=v.days_ago_all(days))
            none = v.say("none", nouns=plural, window=spec.recency_cap_days)
            return np.where(np.isnan(days), none, said)
        if feature.startswith("decayed_"):
            return self._recent_count(feature[len("decayed_") :], rows, lowering)
        if feature.startswith("active_days_"):
            window = feature[len("active_days_") : -1]
            return v.active_all(rows[feature].to_numpy(dtype=float), window, lowering)
        if feature == "days_since_any":
            days = rows[feature].to_numpy(dtype=float)
            quiet = v.fill("quiet_for", n, n=_int_texts(days))
            recent = v.fill("last_activity", n, ago=v.days_ago_all(days))
            out = np.where(np.nan_to_num(days) >= 30, quiet, recent)
            none = v.say("no_activity", window=spec.recency_cap_days)
            return np.where(np.isnan(days), none, out)
        if feature == "trend_7d_vs_prev_21d":
            trend = rows[feature].to_numpy(dtype=float)
            quiet = np.nan_to_num(rows["days_since_any"].to_numpy(dtype=float), nan=np.inf) >= 28
            out = np.where(
                trend >= 1.25,
                v.say("picking_up"),
                np.where(trend <= 0.8, v.say("slowing_down"), v.say("steady")),
            ).astype(object)
            return np.where(quiet, v.say("quiet_weeks"), out)
        if feature == "lead_age_days":
            days = rows[feature].to_numpy(dtype=float)
            return v.fill("created", n, ago=v.days_ago_all(days))
        if feature.startswith("account_"):
            return self._account(feature, rows)
        return np.full(n, feature.replace("_", " "), dtype=object)

    def _account(self, feature: str, rows: pd.DataFrame) -> np.ndarray:
        """What the lead's colleagues did, in words (`leadscore.data.accounts`)."""
        v, n = self.vocabulary, len(rows)
        values = rows[feature].to_numpy(dtype=float)
        counts = _int_texts(values)
        window = re.search(r"_(\d+)d$", feature)
        days = window.group(1) if window else ""
        if feature in ("account_people", "account_open_people", "account_conversions"):
            said = v.fill(f"account.{feature.removeprefix('account_')}", n, n=counts)
        elif feature.startswith("account_active_people_"):
            said = v.fill("account.active", n, n=counts, window=days)
        elif feature.startswith("account_n_"):
            said = v.fill("account.events", n, n=counts, window=days)
        elif feature == "account_days_since_any":
            said = v.fill("account.last", n, ago=v.days_ago_all(values))
            cap = self.builder.accounts.recency_cap_days if self.builder.accounts else 180
            said = np.where(np.isnan(values), v.say("account.quiet", window=cap), said)
            people = rows["account_people"].to_numpy(dtype=float)
            return np.where(np.isnan(people), v.say("account.none"), said)
        elif feature.startswith("account_share_active_"):
            share = [f"{x:.0%}" for x in np.nan_to_num(values)]
            said = v.fill("account.share_active", n, share=np.array(share, object), window=days)
        elif feature.startswith("account_events_per_person_"):
            per = np.array([f"{x:.1f}" for x in np.nan_to_num(values)], dtype=object)
            said = v.fill("account.per_person", n, n=per, window=days)
        elif feature.startswith("account_trend_"):
            pace = np.array([f"{x:.1f}" for x in np.nan_to_num(values)], dtype=object)
            said = v.fill("account.pace", n, x=pace)
        elif feature.startswith("account_role_"):
            role = feature.removeprefix("account_role_").replace("_", " ")
            said = v.fill("account.role", n, n=counts, role=role)
        elif feature == "account_buying_group":
            share = np.array([f"{x:.0%}" for x in np.nan_to_num(values)], dtype=object)
            said = v.fill("account.buying_group", n, share=share)
        else:
            said = np.full(n, feature.replace("_", " "), dtype=object)
        people = (
            rows["account_people"].to_numpy(dtype=float) if "account_people" in rows else values
        )
        return np.where(np.isnan(people), v.say("account.none"), said)

    def _category(self, feature: str, positions: np.ndarray) -> np.ndarray:
        v = self.vocabulary
        values = self.attributes()[feature].iloc[positions].astype("str")
        if feature in ("email_domain_kind", "seniority", "department"):
            # A phrase per distinct value (a handful), then looked up for every lead.
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            said = [category_phrase(v, feature, u) for u in uniques]
            return np.array([*said, category_phrase(v, feature, None)], dtype=object)[codes]
        # Describe what the model saw: a value it did not learn (rare or new) was "other"
        # to it, and a rare raw value (a company, a city) must not reach a published reason.
        label = self.field_label(feature)
        known = values.isin(self.builder.categories_.get(feature, []))
        missing = values.isna() | values.eq("")
        shown = values.fillna("").str.replace("_", " ").to_numpy(dtype=object)
        said = v.fill("value", len(values), label=label, value=shown)
        said = np.where(known, said, v.say("less_common", label=label))
        return np.where(missing, v.say("not_given", label=label), said)


def category_phrase(v: Vocabulary, feature: str, value) -> str:
    """The phrase of the e-mail kind, seniority or department of one lead."""
    if feature == "email_domain_kind":
        return v.email_kind(value)
    if feature == "seniority":
        word = v.seniority(value if isinstance(value, str) else None)
        return v.say("no_seniority") if word is None else v.say("title_says", seniority=word)
    if value is None or not isinstance(value, str) or value in ("unknown", "nan", "<NA>"):
        return v.say("no_department")
    return v.say("department", department=v.department(value))


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
    language: str = "en",
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
    phrases = Phrases(builder, rows, labels, language)
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
