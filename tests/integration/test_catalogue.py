"""A catalogue of malformed inputs, each through the real `leadscore` command: `train`, and
`score` with a champion trained on the same data before it broke.

Every case must end with its own clear message (asserted by a phrase only it produces), exit
code 2, no traceback anywhere on the terminal, and nothing published: no model registered,
no scores written, and the scores already published left exactly as they were. Scoring
refuses what training refuses: the same checks of the source and the rule file run first.

The command runs in-process (typer's runner) so Prefect's engine starts once for the whole
catalogue; `capfd` also catches what Prefect or MLflow write to the real terminal.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import DEFAULT_RULES, FLAT_CONFIG, FLAT_RULES, write_flat_export
from typer.testing import CliRunner

from leadscore.apps.cli import app
from leadscore.io.tables import write_tables
from leadscore.synthetic import generate_crm


@pytest.fixture(scope="module")
def runner(prefect_home: str) -> CliRunner:
    os.environ["PREFECT_HOME"] = prefect_home
    return CliRunner()


@pytest.fixture(scope="module")
def timed() -> dict[str, pd.DataFrame]:
    tables = generate_crm(600, seed=4, end=END).tables()
    return {k: tables[k] for k in ("leads", "activities", "outcomes")}


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    path = write_flat_export(tmp_path_factory.mktemp("flat") / "data", leads=1500)
    return pd.read_csv(path)


def _text(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.assign(**{column: frame[column].astype(str)})


def _set(frame: pd.DataFrame, column: str, rows: list[int], value) -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].astype(object)
    out.loc[out.index[rows], column] = value
    return out


#: The generated history ends here; scoring runs as of this date.
END = "2026-03-31"

# Each case: id, kind ("timed" or "flat"), how to break the tables (and the config), phrase,
# and whether `score` must refuse it too (training-only cases concern what there is to
# learn from, which scoring does not need).
Mutation = Callable[[dict[str, pd.DataFrame], dict], None]


def _leads(fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Mutation:
    def apply(tables: dict[str, pd.DataFrame], config: dict) -> None:
        tables["leads"] = fn(tables["leads"])

    return apply


def _table(name: str, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Mutation:
    def apply(tables: dict[str, pd.DataFrame], config: dict) -> None:
        tables[name] = fn(tables[name])

    return apply


def _config(**changes) -> Mutation:
    def apply(tables: dict[str, pd.DataFrame], config: dict) -> None:
        for dotted, value in changes.items():
            node = config
            *parents, key = dotted.split("__")
            for part in parents:
                node = node.setdefault(part, {})
            node[key] = value

    return apply


def _mixed_zones(f: pd.DataFrame) -> pd.DataFrame:
    text = f["created_at"].astype(str)
    text.iloc[::2] = text.iloc[::2] + "+02:00"
    return f.assign(created_at=text)


def _unknown_lead(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(lead_id=np.where(np.arange(len(f)) % 50 == 0, 99_999_999, f["lead_id"]))


def _before_creation(f: pd.DataFrame) -> pd.DataFrame:
    out = f.copy()
    out["converted_at"] = out["converted_at"].astype(object)
    first = out["converted_at"].notna().idxmax()
    out.loc[first, "converted_at"] = "2001-01-01 00:00:00"
    return out


def _drop_table(name: str) -> Mutation:
    def apply(tables: dict[str, pd.DataFrame], config: dict) -> None:
        del tables[name]

    return apply


def _corrupt_parquet(tables: dict[str, pd.DataFrame], config: dict) -> None:
    tables["leads"] = b"PAR1 this is not a parquet file"  # type: ignore[assignment]


TRAIN_ONLY = {
    "no conversion at all",
    "history shorter than the horizon",
    "no label at all",  # an export of open leads only is what scoring is for
    "every lead converted",
}

CASES = [
    ("empty leads table", "timed", _leads(lambda f: f.head(0)), "is empty (no rows)"),
    (
        "lead id column missing",
        "timed",
        _leads(lambda f: f.drop(columns=["lead_id"])),
        "missing column(s) 'lead_id'",
    ),
    (
        "empty lead ids",
        "timed",
        _leads(lambda f: _set(f, "lead_id", [2, 9], None)),
        "empty lead id",
    ),
    (
        "duplicate lead ids",
        "timed",
        _leads(lambda f: pd.concat([f, f.head(3)], ignore_index=True)),
        "duplicate lead id",
    ),
    (
        "unparseable created_at",
        "timed",
        _leads(lambda f: _set(_text(f, "created_at"), "created_at", [4], "next tuesday")),
        "row(s): not timestamps",
    ),
    (
        "future created_at",
        "timed",
        _leads(lambda f: _set(_text(f, "created_at"), "created_at", [5], "2199-01-01 00:00:00")),
        "timestamps in the future",
    ),
    ("mixed time zones", "timed", _leads(_mixed_zones), "mixes time zones"),
    (
        "epoch numbers as timestamps",
        "timed",
        _leads(lambda f: f.assign(created_at=1_700_000_000 + np.arange(len(f)))),
        "holds numbers, not timestamps",
    ),
    (
        "text in a numeric attribute",
        "timed",
        _leads(lambda f: _set(f, "employees", [1, 7], "about fifty")),
        "non-numeric value in a numeric attribute",
    ),
    (
        "activities for unknown leads",
        "timed",
        _table("activities", _unknown_lead),
        "lead id matches no lead",
    ),
    (
        "activities for no known lead",
        "timed",
        _table("activities", lambda f: f.assign(lead_id="x" + f["lead_id"].astype(str))),
        "none of its",
    ),
    (
        "empty activity type",
        "timed",
        _table("activities", lambda f: _set(f, "activity_type", [0, 1, 2], None)),
        "empty activity type",
    ),
    (
        "conversion before creation",
        "timed",
        _table("outcomes", _before_creation),
        "conversion before the lead was created",
    ),
    ("outcomes table missing", "timed", _drop_table("outcomes"), "table 'outcomes' not found"),
    ("corrupt file", "timed", _corrupt_parquet, "check that the file is a valid parquet file"),
    (
        # Too few conversions for a model is the rules-only path (test_rules_only.py);
        # none at all tells nothing of the rules either, and is refused.
        "no conversion at all",
        "timed",
        _table("outcomes", lambda f: f.head(3).assign(converted_at=pd.NaT)),
        "too few conversions to train",
    ),
    (
        "history shorter than the horizon",
        "timed",
        _config(horizon_days=3000),
        "no labelled snapshot",
    ),
    (
        "label not binary",
        "flat",
        _leads(lambda f: _set(f, "Converted", [3, 4, 8], "maybe")),
        "neither positive nor negative",
    ),
    (
        "no label at all",
        "flat",
        _leads(lambda f: f.assign(Converted=None)),
        "no row has a label",
    ),
    (
        "order column not a number",
        "flat",
        _leads(lambda f: _set(f, "Lead Number", [0, 1], "n/a")),
        "non-numeric arrival order",
    ),
    (
        "behaviour rules on a flat export",
        "flat",
        _config(rules="behaviour_rules.yaml"),
        "count activities, but a flat export has none",
    ),
    ("unknown config key", "flat", _config(split__order_colum="Lead Number"), "unknown key"),
    (
        "label column and outcomes table",
        "flat",
        _config(source__tables__outcomes="outcomes"),
        "exclude each other",
    ),
    (
        "missing SQLite file",
        "timed",
        _config(source__uri="sqlite:///nowhere.db"),
        "SQLite database file",
    ),
    (
        "rule on a field the leads lack",
        "flat",
        _config(rules="bad_field_rules.yaml"),
        "which the leads do not have",
    ),
    (
        "empty activities table",
        "timed",
        _table("activities", lambda f: f.head(0)),
        "table 'activities': no activities",
    ),
    (
        "misspelt activity in the rules",
        "timed",
        _config(rules="typo_rules.yaml"),
        "count an activity type that never occurs",
    ),
    ("infinite points", "flat", _config(rules="inf_rules.yaml"), "Input should be a finite number"),
    (
        "points as yes/no",
        "flat",
        _config(rules="bool_rules.yaml"),
        "Input should be a valid number",
    ),
    (
        "every lead converted",
        "flat",
        _leads(lambda f: f.assign(Converted="Yes")),
        "nothing to tell apart",
    ),
    (
        "negative employees",
        "timed",
        _leads(lambda f: _set(f, "employees", [3, 8], -40)),
        "negative value in a numeric attribute",
    ),
]


def _write(case_dir: Path, kind: str, tables: dict, config: dict) -> Path:
    data = case_dir / "data"
    data.mkdir(parents=True)
    for name, frame in tables.items():
        if isinstance(frame, bytes):
            (data / f"{name}.parquet").write_bytes(frame)
        elif kind == "flat":
            frame.to_csv(data / f"{name}.csv", index=False)
        else:
            write_tables({name: frame}, str(data), "csv")
    (case_dir / "rules.yaml").write_text(
        FLAT_RULES if kind == "flat" else DEFAULT_RULES.read_text(encoding="utf-8")
    )
    (case_dir / "behaviour_rules.yaml").write_text(DEFAULT_RULES.read_text(encoding="utf-8"))
    (case_dir / "bad_field_rules.yaml").write_text(
        "mql_threshold: 10\nattribute_rules:\n"
        "  - {name: x, field: Revenue, equals: 1, points: 10}\n"
    )
    (case_dir / "typo_rules.yaml").write_text(
        DEFAULT_RULES.read_text(encoding="utf-8").replace(
            "activity: content_download", "activity: content_downlaod"
        )
    )
    (case_dir / "inf_rules.yaml").write_text(FLAT_RULES.replace("points: 30", "points: .inf"))
    (case_dir / "bool_rules.yaml").write_text(FLAT_RULES.replace("points: 30", "points: true"))
    path = case_dir / "leadscore.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _base_config(kind: str) -> dict:
    if kind == "flat":
        return yaml.safe_load(yaml.safe_dump(FLAT_CONFIG))
    return {"source": {"uri": "data"}, "rules": "rules.yaml"}


def _broken_project(case_dir: Path, kind: str, mutate: Mutation, timed, flat) -> Path:
    tables = {k: v.copy() for k, v in timed.items()} if kind == "timed" else {"export": flat.copy()}
    if kind == "flat":
        tables["leads"] = tables.pop("export")
    config = _base_config(kind)
    mutate(tables, config)
    if kind == "flat":
        tables["export"] = tables.pop("leads")
    return _write(case_dir, kind, tables, config)


def _refused(result, capfd, phrase: str) -> None:
    captured = capfd.readouterr()
    terminal = result.output + captured.out + captured.err
    assert result.exit_code == 2, terminal[-3000:]
    assert phrase in result.output, result.output[-3000:]
    assert "error:" in result.output and "fix:" in result.output
    assert "Traceback" not in terminal


def _has_scores(db: Path) -> bool:
    if not db.exists():
        return False
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        return "lead_scores" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize(("case", "kind", "mutate", "phrase"), CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_refused_clearly(
    case, kind, mutate, phrase, runner, timed, flat, tmp_path, capfd
) -> None:
    path = _broken_project(tmp_path, kind, mutate, timed, flat)
    result = runner.invoke(app, ["train", "--config", str(path)])
    _refused(result, capfd, phrase)
    # Nothing was trained, registered or published.
    assert not (tmp_path / "mlflow.db").exists()
    assert not _has_scores(tmp_path / "crm.db")


@pytest.fixture(scope="module")
def champions(runner, timed, flat, tmp_path_factory) -> dict[str, Path]:
    """A champion per kind, trained on the data before it broke (one MLflow store each)."""
    out = {}
    for kind in ("timed", "flat"):
        folder = tmp_path_factory.mktemp(f"champion-{kind}")
        path = _broken_project(folder, kind, lambda tables, config: None, timed, flat)
        result = runner.invoke(app, ["train", "--config", str(path)])
        assert result.exit_code == 0, result.output[-3000:]
        out[kind] = folder
    return out


@pytest.mark.parametrize(
    ("case", "kind", "mutate", "phrase"),
    [c for c in CASES if c[0] not in TRAIN_ONLY],
    ids=[c[0] for c in CASES if c[0] not in TRAIN_ONLY],
)
def test_scoring_refuses_what_training_refuses(
    case, kind, mutate, phrase, runner, timed, flat, champions, tmp_path, capfd
) -> None:
    trained = champions[kind]
    path = _broken_project(tmp_path, kind, mutate, timed, flat)
    config = yaml.safe_load(path.read_text())
    config["mlflow"] = {
        **config.get("mlflow", {}),
        "tracking_uri": f"sqlite:///{trained / 'mlflow.db'}",
        "artifact_location": str(trained / "mlartifacts"),
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    versions_before = len(list((trained / "mlartifacts").rglob("MLmodel")))
    as_of = ["--as-of", END] if kind == "timed" else []
    result = runner.invoke(app, ["score", "--config", str(path), *as_of])
    _refused(result, capfd, phrase)
    assert not _has_scores(tmp_path / "crm.db")
    assert len(list((trained / "mlartifacts").rglob("MLmodel"))) == versions_before


def test_every_case_has_its_own_message() -> None:
    phrases = [c[3] for c in CASES]
    assert len(CASES) >= 20
    assert len(set(phrases)) == len(phrases)
    for phrase in phrases:
        others = [p for p in phrases if p != phrase]
        assert not any(phrase in o for o in others), phrase


def test_bad_rows_at_scoring_leave_published_scores_alone(runner, tmp_path, capfd) -> None:
    """Train on a good flat export, publish, then break the export: the scores stay."""
    folder = tmp_path / "project"
    write_flat_export(folder / "data", leads=3000)
    config = yaml.safe_load(yaml.safe_dump(FLAT_CONFIG))
    config["publish"] = {"uri": "sqlite:///scores.db"}
    (folder / "rules.yaml").write_text(FLAT_RULES)
    path = folder / "leadscore.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert runner.invoke(app, ["train", "--config", str(path)]).exit_code == 0
    assert runner.invoke(app, ["score", "--config", str(path)]).exit_code == 0
    engine = sa.create_engine(f"sqlite:///{folder / 'scores.db'}")
    before = pd.read_sql_table("lead_scores", engine)
    assert len(before) > 50

    export = pd.read_csv(folder / "data" / "export.csv")
    export["Converted"] = export["Converted"].astype(object)
    export.loc[export.index[:4], "Converted"] = "pending?"
    export.to_csv(folder / "data" / "export.csv", index=False)
    result = runner.invoke(app, ["score", "--config", str(path)])
    terminal = result.output + "".join(capfd.readouterr())
    assert result.exit_code == 2
    assert "'pending?' (4)" in result.output
    assert "Traceback" not in terminal
    after = pd.read_sql_table("lead_scores", engine)
    pd.testing.assert_frame_equal(before, after)

    # With quarantine on, the same export scores without the bad rows, which are kept aside.
    config["validation"] = {"quarantine": "bad_rows.csv"}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = runner.invoke(app, ["score", "--config", str(path)])
    assert result.exit_code == 0, result.output[-2000:]
    aside = pd.read_csv(folder / "bad_rows.export.csv")
    assert len(aside) == 4 and aside["_reason"].str.contains("label").all()
    assert set(aside["_row"]) == {1, 2, 3, 4}
    engine.dispose()
    shutil.rmtree(folder / "mlartifacts", ignore_errors=True)
