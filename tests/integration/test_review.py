"""Marketing's monthly review of a generated history, as examples/monthly_review/README.md
builds it: a model trained as of 15 months ago, every week since scored as it was (the rule
file changed in month 9), then `leadscore review` in English and in Japanese, read back from
what a real Chromium drew. Minutes of work: in CI's long step."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, direct_review_months, invoke_json
from typer.testing import CliRunner

from leadscore.config import load_config
from leadscore.io import publish
from leadscore.io.sources import load_crm

pytestmark = pytest.mark.long

EXAMPLE = REPO / "examples" / "monthly_review"
END, TRAINED_AS_OF, CHANGE = "2026-11-30", "2025-09-01", "2026-05-01"


def _commands() -> list[list[str]]:
    """The example README's commands, as written there (one per line, comments dropped)."""
    text = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    block = text[text.index("```bash\n") + 8 :]
    lines = [line.split("#")[0].strip() for line in block[: block.index("```")].splitlines()]
    return [shlex.split(line) for line in lines if line]


@pytest.fixture(scope="module")
def history(tmp_path_factory, prefect_home: str) -> tuple[Path, CliRunner]:
    """The example's commands run in a copy of its folder: generate, train as of 15 months
    ago, backfill with the first rule file, change it, backfill the rest, review."""
    os.environ["PREFECT_HOME"] = prefect_home
    runner = CliRunner()
    folder = tmp_path_factory.mktemp("review") / "monthly_review"
    shutil.copytree(EXAMPLE, folder)
    here = Path.cwd()
    os.chdir(folder)
    try:
        for command in _commands():
            if command[0] == "cp":
                shutil.copyfile(command[1], command[2])
                continue
            assert command[0] == "leadscore", command
            code, summary, output = invoke_json(runner, command[1:])
            assert code == 0, (command, output[-3000:])
            if command[1] == "backfill":
                assert summary["mode"] == "model", summary
                assert all(r["published"] for r in summary["runs"])
    finally:
        os.chdir(here)
    return folder, runner


def test_twelve_months_two_rule_versions_and_the_effect_of_the_change(history) -> None:
    folder, runner = history
    code, review, output = invoke_json(
        runner, ["review", "-c", str(folder / "leadscore.yaml"), "--month", "2026-11"]
    )
    assert code == 0, output[-3000:]
    months = review["months"]
    assert [m["month"] for m in months] == [
        str(p) for p in pd.period_range(end="2026-11", periods=12, freq="M")
    ]
    config = load_config(folder / "leadscore.yaml")
    crm = load_crm(config)
    until = pd.Timestamp(review["outcomes_until"])
    for m in months:  # open until the month's last day + 90 days has been observed
        last = pd.Period(m["month"], freq="M").end_time.normalize()
        assert m["provisional"] == (last + pd.Timedelta(days=90) > until), m["month"]
    assert sum(m["provisional"] for m in months) == 3
    history_rows = publish.read_scores(config.publish_uri, config.publish.history_table)
    direct = direct_review_months(history_rows, crm.outcomes, 90, [m["month"] for m in months])
    for got, want in zip(months, direct.to_dict("records"), strict=True):
        for key in ("leads", "rule_mqls", "rule_mql_conversions", "tier_as",
                    "tier_a_conversions", "conversions", "volume"):  # fmt: skip
            assert got[key] == want[key], (got["month"], key)
        assert got["model_roc_auc"] == pytest.approx(want["model_roc_auc"], abs=1e-6)
    # A model fit on what was known 15 months ago still ranks better than the rules.
    closed = [m for m in months if not m["provisional"]]
    assert all(m["model_roc_auc"] > m["rule_roc_auc"] for m in closed)
    assert sum(m["rule_mqls"] for m in months) > 1000

    v1, v2 = review["rule_versions"]
    # One file edited in place (mql_rules.yaml), two versions by their content.
    assert v1["file"] == v2["file"] == "mql_rules.yaml" and v1["sha256"] != v2["sha256"]
    assert v2["first_run"] == CHANGE
    (change,) = review["changes"]
    assert change["threshold"] == [50, 60]
    rules = {r["rule"]: r["change"] for r in change["rules"]}
    assert rules == {"contact_request": "added", "content_download": "points"}
    effect = review["effect"]
    assert effect["changed_on"] == CHANGE and effect["days"] == 90
    before, after = effect["sides"]
    assert before["mqls"] > 100 and after["mqls"] > 100
    d, low, high = effect["difference"]
    assert low < d < high
    assert Path(review["path"]).is_file()
    assert (folder / "review-2026-11.html").is_file()  # the example's own review


def test_the_sla_recovers_the_generators_response_time_effect(history) -> None:
    """Sales answered hand-raises after random delays and slow answers lost deals (the
    generator's known effect): the review finds conversion falling with response time."""
    folder, runner = history
    code, review, output = invoke_json(
        runner, ["review", "-c", str(folder / "leadscore.yaml"), "--month", "2026-11"]
    )
    assert code == 0, output[-3000:]
    sla = review["sla"]
    assert sla["touch_types"] == ["call", "sales_email", "meeting"]
    assert sla["months"] == [m["month"] for m in review["months"] if not m["provisional"]]
    rules = sla["groups"]["rules"]
    # Nearly every MQL's moment was replayed from its activities, not its run's day.
    assert rules["replayed"] > 0.9 * rules["leads"] > 1000
    buckets = {b["bucket"]: b for b in rules["buckets"]}
    assert sum(b["leads"] for b in rules["buckets"]) == rules["leads"]
    fast = ("le_5m", "5m_60m")
    slow = ("1h_24h", "over_24h")
    assert min(buckets[k]["rate"] for k in fast) > max(buckets[k]["rate"] for k in slow)
    d, low, high = rules["answered_within_hour_minus_later"]
    assert 0 < low < d < high  # the interval excludes no effect
    # The truth it recovers: the generator's deals lost grow with the delay.
    import sqlite3

    with sqlite3.connect(folder / "crm.db") as conn:
        truth = pd.read_sql(
            "SELECT response_minutes, lost_to_slow_response FROM ground_truth_leads "
            "WHERE response_minutes IS NOT NULL", conn
        )  # fmt: skip
    lost = truth.groupby(pd.cut(truth["response_minutes"], [0, 60, 1e9]), observed=True)[
        "lost_to_slow_response"
    ].mean()
    assert lost.iloc[0] < lost.iloc[1]


def test_the_japanese_review_as_chromium_draws_it(history, browser, tmp_path) -> None:
    folder, runner = history
    out = tmp_path / "review-ja.html"
    code, review, output = invoke_json(
        runner,
        [
            "review",
            "-c",
            str(folder / "leadscore.yaml"),
            "--month",
            "2026-11",
            "--language",
            "ja",
            "-o",
            str(out),
        ],
    )
    assert code == 0, output[-3000:]
    assert review["language"] == "ja" and review["path"] == str(out)
    text, fonts = browser.rendered_text(out, tmp_path / "review-ja.pdf")
    for words in ("月次レビュー:2026年11月", "月ごとの KPI", "ルールファイルのバージョン",
                  "前回の変更の効果", "暫定", "2026/05/01 の変更", "測定方法",
                  "営業 SLA", "5 分以内"):  # fmt: skip
        assert words in text, words
    # Drawn with a font that has the glyphs (Debian's fonts-noto-cjk, which .ci/run installs).
    assert any("CJK" in f for f in fonts), fonts
    shot = tmp_path / "review-ja.png"
    dom, console = browser.open(out, shot, size="1280,3200")
    assert not console, console
    colours, ink = browser.ink(shot)
    assert colours > 50 and ink > 0.05
    assert "2026年11月" in dom
