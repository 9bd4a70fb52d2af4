"""Free-text job titles (English and Japanese) mapped to seniority and department."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

SENIORITY_LEVELS = (
    "c_level",
    "vp",
    "director",
    "manager",
    "individual",
    "intern",
    "student",
    "unknown",
)
DEPARTMENTS = (
    "executive",
    "marketing",
    "sales",
    "it",
    "engineering",
    "finance",
    "hr",
    "operations",
    "education",
    "other",
    "unknown",
)
# First match wins, so the order goes from the most specific to the least specific pattern.
_SENIORITY_PATTERNS: tuple[tuple[str, str], ...] = (
    ("student", r"\bstudent\b|\bmba candidate\b|\bphd candidate\b|学生|大学院生"),
    (
        "intern",
        r"\bintern\b|\binternship\b|\btrainee\b|looking for|job seeker|seeking|open to work"
        r"|インターン|研修生|求職",
    ),
    (
        "c_level",
        r"\bc[etfiom]o\b|\bchief\b|(?<!vice )(?<!vice-)\bpresident\b|\bfounder\b|\bowner\b"
        r"|\bmanaging director\b"
        r"|代表取締役|社長|会長|最高.*責任者",
    ),
    ("vp", r"\bvp\b|\bv\.p\.|vice[- ]president|\bsvp\b|\bevp\b|本部長|執行役員|取締役|事業部長"),
    ("director", r"\bdirector\b|\bhead of\b|\bhead\b|部長|室長|センター長"),
    ("manager", r"\bmanager\b|\blead\b|\bsupervisor\b|課長|係長|マネージャー|マネジャー|リーダー"),
    (
        "individual",
        r"\bengineer\b|\bdeveloper\b|\banalyst\b|\bspecialist\b|\bconsultant\b|\bassociate\b"
        r"|\bcoordinator\b|\bexecutive\b|\barchitect\b|\bscientist\b|\brepresentative\b"
        r"|\badministrator\b|\bdesigner\b|\baccountant\b|\bofficer\b|\bstaff\b|\bmember\b"
        r"|\bsdr\b|\bbdr\b|\bassistant\b"
        r"|主任|担当|エンジニア|スタッフ|社員|アナリスト|コンサルタント|開発者",
    ),
)
_DEPARTMENT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("education", r"\bstudent\b|\bprofessor\b|\blecturer\b|\bteacher\b|学生|大学院生|教授|講師"),
    ("marketing", r"marketing|\bbrand\b|\bgrowth\b|\bdemand gen|\bcmo\b|マーケティング|広報|宣伝"),
    (
        "sales",
        r"\bsales\b|business development|\bbdr\b|\bsdr\b|account (?:executive|manager)|\bcro\b"
        r"|chief revenue|営業|販売",
    ),
    (
        "it",
        r"\bit\b|information (?:technology|systems|officer)|\bcio\b|\bsysadmin|\bsystems\b"
        r"|情報システム|情シス",
    ),
    (
        "engineering",
        r"engineer|developer|software|\bcto\b|technology|\bdata\b|devops|architect|scientist"
        r"|開発|エンジニア|技術|研究",
    ),
    ("finance", r"financ|\bcfo\b|accounting|accountant|controller|treasur|経理|財務"),
    ("hr", r"\bhr\b|human resources|people|talent|recruit|人事|採用"),
    ("operations", r"operations|\bcoo\b|procurement|purchasing|総務|購買|調達|業務"),
    (
        "executive",
        r"\bceo\b|\bchief executive\b|(?<!vice )(?<!vice-)\bpresident\b|\bfounder\b|\bowner\b"
        r"|代表取締役|社長",
    ),
)


def _classify(titles: pd.Series, patterns: tuple[tuple[str, str], ...], missing: str) -> pd.Series:
    """Label each title with the first pattern it matches; `missing` for empty titles."""
    # Titles repeat a lot: classify each distinct title once, then map back.
    codes, uniques = pd.factorize(titles.astype("str"), use_na_sentinel=True)
    # NFKC: full-width Latin (ＶＰ) and half-width katakana (ｲﾝﾀｰﾝ), which Japanese forms
    # often carry, read as their ordinary forms.
    text = pd.Series(uniques, dtype="str").str.normalize("NFKC").str.strip().str.lower()
    result = pd.Series(missing if missing == "unknown" else "other", index=text.index, dtype="str")
    assigned = pd.Series(False, index=text.index)
    for label, pattern in patterns:
        hit = text.str.contains(pattern, regex=True, flags=re.IGNORECASE).astype(bool) & ~assigned
        result = result.mask(hit, label)
        assigned |= hit
    result = result.mask(text.eq(""), "unknown").to_numpy(dtype=object)
    mapped = np.append(result, "unknown")[np.where(codes >= 0, codes, len(result))]
    return pd.Series(mapped, index=titles.index, dtype="str")


def seniority_from_title(titles: pd.Series) -> pd.Series:
    """Map free-text titles such as 'VP Sales' or '営業部長' to a seniority level."""
    return _classify(titles, _SENIORITY_PATTERNS, missing="unknown")


def department_from_title(titles: pd.Series) -> pd.Series:
    """Map titles such as 'Director of Marketing' or '情報システム部 課長' to a department."""
    return _classify(titles, _DEPARTMENT_PATTERNS, missing="other")
