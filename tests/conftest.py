"""Shared fixtures: isolated Prefect/MLflow state, tiny hand-built frames, a small CRM."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        help="also run the tests marked `long` (real Prefect workers, MLflow and Dask "
        "servers, signals); CI runs them in a step of their own (-m long)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers by folder: unit tests are fast; integration ones train models and use real
    stores in-process (`slow`); e2e ones run the real command, servers and workers
    (`slow` and `e2e`).

    Tests marked `long` (minutes of servers, workers, clusters and signals) are left out
    of a plain run, which stays under 10 minutes on 2 cores; `--long`, a `-m` or `-k`
    expression or naming their file runs them, and CI runs them in a step of their own
    (`-m long`)."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in ("integration", "e2e"):
            item.add_marker(pytest.mark.slow)
        if folder == "e2e":
            item.add_marker(pytest.mark.e2e)
    if config.getoption("--long") or config.getoption("-m") or config.getoption("-k"):
        return  # the user chose what runs
    named = set()
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        if path.is_file():
            named.add(path.resolve())
    left_out = [
        item
        for item in items
        if item.get_closest_marker("long") is not None and item.path.resolve() not in named
    ]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]


#: Modules whose tests are spread over both workers one by one (each builds its own data).
SPREAD = ("test_export_corpus.py",)

_DEMO_READER = re.compile(r"def \w+\([^)]*\bdemo(?:_batch)?\b")


@functools.cache
def _reads_demo(path: str) -> bool:
    file = Path(path)
    file = file if file.is_absolute() else REPO / file
    return file.is_file() and bool(_DEMO_READER.search(file.read_text(encoding="utf-8")))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Two workers: each test module runs on one worker (its module fixtures, a trained
    model or a server, are built once), and every module that reads the shared `demo`
    project runs on the same worker (the demo is built once); the tests of a module in
    `SPREAD` go to either worker one by one.

    (pytest-xdist's own `--dist loadgroup` cannot group with pytest 9: it renames items
    through an attribute pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class Modules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if path.endswith(SPREAD):  # independent cases with no module fixture to share
                return nodeid
            return "the demo's readers" if _reads_demo(path) else path

    return Modules(config, log)


def pytest_configure(config: pytest.Config) -> None:
    # Keep every run's Prefect and MLflow state out of the user's home.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for var in ("LEADSCORE_SOURCE_URI", "LEADSCORE_PUBLISH_URI", "LEADSCORE_MLFLOW_TRACKING_URI"):
        os.environ.pop(var, None)


@pytest.fixture(autouse=True)
def _no_flow_heartbeat(request: pytest.FixtureRequest):
    """Flows run in this process end ~0.8 s sooner without Prefect's flow heartbeat, whose
    thread stops in one-second steps (~1.1 s per flow call instead of ~0.3 s). Unit tests
    run no flow and do not import Prefect."""
    if request.node.path.parent.name == "unit":
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> str:
    home = tmp_path_factory.mktemp("prefect_home")
    yield str(home)
    shutil.rmtree(home, ignore_errors=True)


#: The repository, and the real data beside it (../shared/data: see its README).
REPO = Path(__file__).resolve().parents[1]
X_EDUCATION = REPO.parent / "shared" / "data" / "x_education"
#: The default MQL rule file.
DEFAULT_RULES = REPO / "models" / "mql_rules.yaml"

#: The installed console script, exactly as a user runs it.
CLI = [str(Path(sys.executable).with_name("leadscore"))]


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `leadscore ARGS` in a subprocess, as a user would."""
    return subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )


class InProcess:
    """A command run in this process: exit code, the --json summary, what it printed."""

    def __init__(self, result) -> None:
        self.returncode = result.exit_code
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        self.stdout = lines[-1] if lines else result.stdout
        self.stderr = result.output


def invoke_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> InProcess:
    """Run `leadscore ARGS` in this process (Prefect's engine starts once per session), in
    `cwd` and with `env` set for the run: where the point is the result, not the process."""
    from typer.testing import CliRunner

    from leadscore.apps.cli import app

    here = Path.cwd()
    os.chdir(cwd)
    try:
        return InProcess(CliRunner().invoke(app, args, env=env))
    finally:
        os.chdir(here)


@pytest.fixture(scope="session")
def prefect_api(prefect_home: str) -> str:
    """One real Prefect server for the session's CLI runs, as in production.

    Each CLI process would otherwise start Prefect's temporary server (7-11 s apiece).
    """
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": prefect_home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(Path(prefect_home) / "server.log", "w")  # noqa: SIM115 - closed at teardown
    prefect = str(Path(sys.executable).with_name("prefect"))
    process = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                written = (Path(prefect_home) / "server.log").read_text()
                pytest.fail(f"prefect server exited: {written[-3000:]}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prefect server did not become healthy in 120 s")
            time.sleep(0.5)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _cli_environment(prefect_home: str, prefect_api: str) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_HOME": prefect_home,
        "PREFECT_API_URL": prefect_api,
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture(scope="module")
def cli_env(prefect_home: str, prefect_api: str) -> dict[str, str]:
    return _cli_environment(prefect_home, prefect_api)


@pytest.fixture(scope="session")
def demo(tmp_path_factory, prefect_home: str, prefect_api: str) -> tuple[Path, dict]:
    """One `leadscore demo` project (4,000 generated leads, a champion, a published run),
    run through the real command once, for every test that only reads it."""
    import json

    workdir = tmp_path_factory.mktemp("demo")
    args = ["demo", "--leads", "4000", "--workdir", str(workdir), "--json"]
    result = run_cli(args, _cli_environment(prefect_home, prefect_api), workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, json.loads(result.stdout)


@pytest.fixture(scope="session")
def demo_batch(demo):
    """The batch's own scores of every open lead of the demo at its published as-of."""
    from types import SimpleNamespace

    from leadscore.config import load_config
    from leadscore.data.rules import load_rules
    from leadscore.io.publish import read_scores
    from leadscore.io.sources import load_crm
    from leadscore.lifecycle.registry import load_champion

    workdir, summary = demo
    config = load_config(workdir / "leadscore.yaml")
    rules = load_rules(config.rules_path)
    crm = load_crm(config)
    as_of = pd.Timestamp(summary["as_of"])
    scores = load_champion(config).scorer(rules, config).score(crm, as_of)
    published = read_scores(config.publish_uri, config.publish.table, latest=True)
    return SimpleNamespace(
        config=config, crm=crm, as_of=as_of, scores=scores.set_index("lead_id"),
        published=published.set_index("lead_id"), rules=rules,
    )  # fmt: skip


def sample_leads(batch, k: int = 25) -> list:
    """Leads across the range: the top, MQLs, and a seeded random draw."""
    s = batch.scores
    top = s["conversion_probability"].nlargest(5).index
    mql = s.index[s["is_mql"]][:5]
    rest = s.sample(k, random_state=0).index
    return list(dict.fromkeys([*top, *mql, *rest]))


def assert_same_as_batch(answer: dict, row: pd.Series, published: pd.Series | None) -> None:
    """An on-demand answer is the batch's row (and, at its as-of, its published standing)."""
    assert answer["conversion_probability"] == pytest.approx(
        row["conversion_probability"], abs=1e-9
    )
    assert answer["reasons_up"] == [r for r in row["reasons_up"].split("; ") if r]
    assert answer["reasons_down"] == [r for r in row["reasons_down"].split("; ") if r]
    assert answer["rule_score"] == row["rule_score"]
    assert answer["is_mql"] == bool(row["is_mql"])
    assert ",".join(answer["rules_fired"]) == row["rules_fired"]
    if published is not None:
        # Ranked in the published run, at its own as-of, it gets its published standing.
        assert answer["percentile"] == pytest.approx(published["percentile"], abs=1e-9)
        assert answer["tier"] == published["tier"]


def ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value)


@pytest.fixture
def tiny_leads() -> pd.DataFrame:
    """Five leads with a null in every attribute column."""
    return pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4, 5],
            "created_at": pd.to_datetime(
                [
                    "2026-01-01 10:00",
                    "2026-01-05 00:00",
                    "2026-02-20 00:00",
                    "2026-03-01 00:00",
                    "2026-01-10 00:00",
                ]
            ).astype("datetime64[us]"),
            "industry": pd.array(
                ["software", None, "retail", "software", "education"], dtype="str"
            ),
            "country": pd.array(["US", "JP", None, "DE", "US"], dtype="str"),
            "lead_source": pd.array(
                ["web_form", "event", "referral", None, "webinar"], dtype="str"
            ),
            "employees": [250.0, None, 12.0, 5000.0, None],
            "job_title": pd.array(
                ["VP Marketing", "営業部長", None, "Software Engineer", "Student"], dtype="str"
            ),
            "email": pd.array(
                ["a@acme.example", "b@yahoo.co.jp", None, "d@rivalscore.com", "e@mit.edu"],
                dtype="str",
            ),
        }
    )


@pytest.fixture
def tiny_activities() -> pd.DataFrame:
    """Activities around an as-of of 2026-03-01, including one exactly at it and after it."""
    rows = [
        (1, "2026-02-27 09:00", "page_view", "/pricing"),
        (1, "2026-02-27 09:05", "page_view", "/pricing/enterprise"),
        (1, "2026-02-10 12:00", "content_download", "whitepaper:x"),
        (1, "2026-01-15 12:00", "page_view", "/blog/a"),
        (1, "2026-03-01 00:00", "demo_request", "form:demo"),  # exactly at as-of: excluded
        (1, "2026-03-05 00:00", "page_view", "/pricing"),  # after as-of: excluded
        (2, "2026-02-28 23:59", "page_view", "/careers"),
        (2, "2025-06-01 10:00", "email_open", "newsletter"),  # outside every window
        (5, "2026-02-20 10:00", "content_download", "ebook:y"),
        (5, "2026-02-21 10:00", "content_download", "ebook:y"),
        (5, "2026-02-22 10:00", "content_download", "ebook:z"),
        (99, "2026-02-20 10:00", "page_view", "/pricing"),  # unknown lead
    ]
    frame = pd.DataFrame(rows, columns=["lead_id", "occurred_at", "activity_type", "detail"])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"]).astype("datetime64[us]")
    frame["activity_type"] = frame["activity_type"].astype("str")
    frame["detail"] = frame["detail"].astype("str")
    return frame


class Browser:
    """Debian's headless Chromium: screenshot a local page, collect its console, dump its DOM."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-sync",
        "--disable-background-networking",
        "--disable-component-update",
        # No network at all: a page that needed a CDN would render broken.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
    )

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def _run(self, args: list[str], tmp: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.binary, *self.FLAGS, f"--user-data-dir={tmp}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def open(self, page: Path, screenshot: Path, size: str = "1280,4000") -> tuple[str, list[str]]:
        """Screenshot `page`; returns its DOM after scripts ran and its console messages."""
        with tempfile.TemporaryDirectory() as tmp:
            shot = self._run(
                [f"--screenshot={screenshot}", f"--window-size={size}", page.as_uri()], tmp
            )
        with tempfile.TemporaryDirectory() as tmp:
            dom = self._run(["--dump-dom", page.as_uri()], tmp)
        console = [
            line
            for line in (shot.stderr + dom.stderr).splitlines()
            if ":CONSOLE" in line or "Uncaught" in line
        ]
        assert screenshot.exists(), shot.stderr[-2000:]
        return dom.stdout, console

    def rendered_text(self, page: Path, pdf: Path) -> tuple[str, set[str]]:
        """The page as Chromium lays it out and draws it: printed to PDF, its text read back
        from the glyphs drawn (NFKC, so a radical glyph reads as its character) and the font
        families it drew them with. Text in a font without the glyph would not come back."""
        import unicodedata

        from pypdf import PdfReader

        with tempfile.TemporaryDirectory() as tmp:
            done = self._run(["--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri()],
                             tmp)  # fmt: skip
        assert pdf.exists(), done.stderr[-2000:]
        reader = PdfReader(pdf)
        text = unicodedata.normalize("NFKC", "\n".join(p.extract_text() for p in reader.pages))
        families: set[str] = set()
        for page_ in reader.pages:
            fonts = page_["/Resources"].get_object().get("/Font") or {}
            for font in fonts.values():
                font = font.get_object()
                for f in [font, *(d.get_object() for d in font.get("/DescendantFonts") or [])]:
                    descriptor = f.get("/FontDescriptor")
                    if descriptor is not None:
                        descriptor = descriptor.get_object()
                        families.add(
                            str(descriptor.get("/FontFamily") or descriptor.get("/FontName"))
                        )
        return text, families

    @staticmethod
    def ink(path: Path) -> tuple[int, float]:
        """Distinct colours and the share of non-white pixels of a screenshot."""
        return image_is_not_blank(path)


@pytest.fixture(scope="session")
def browser() -> Browser:
    """A real headless Chromium; in CI its absence is a failure, not a skip."""
    binary = next(
        (shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None
    )
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium) - browser test skipped")
    return Browser(binary)


def image_is_not_blank(path: Path) -> tuple[int, float]:
    """Distinct colours and the share of non-white pixels of a screenshot."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        white = sum(count for count, colour in colours if min(colour) >= 250)
        return len(colours), 1 - white / (rgb.width * rgb.height)


def write_flat_export(folder: Path, leads: int = 3000, seed: int = 1) -> Path:
    """A user's flat CRM export as CSV: one row per lead, a Yes/No label, no timestamps.

    Built from generated leads: the label is "converted at all", 5 % of rows are open
    (empty label), "Sales Status" is filled in by sales after the outcome (a leak the guard
    must find), and "Select" is a web form's placeholder.
    """
    from leadscore.synthetic import generate_crm

    crm = generate_crm(leads, seed=seed, end="2026-03-31")
    rng = np.random.default_rng(seed)
    base = crm.leads.merge(crm.outcomes, on="lead_id", how="left")
    converted = base["converted_at"].notna().to_numpy()
    label = np.where(converted, "Yes", "No").astype(object)
    label[rng.random(len(base)) < 0.05] = None
    status = np.where(
        converted,
        rng.choice(["Closed - Won", "Contract sent"], len(base), p=[0.8, 0.2]),
        rng.choice(["Nurture", "Lost", None], len(base), p=[0.3, 0.2, 0.5]),
    )
    source = base["lead_source"].astype(object).where(rng.random(len(base)) > 0.1, "Select")
    frame = pd.DataFrame(
        {
            "Lead Id": [f"L-{i:06d}" for i in base["lead_id"]],
            "Lead Number": 100_000 + base["lead_id"].to_numpy(),
            "Email": base["email"],
            "Job Title": base["job_title"],
            "Industry": base["industry"],
            "Employees": base["employees"],
            "Country": base["country"],
            "Lead Source": source,
            "Sales Status": status,
            "Converted": label,
        }
    ).sample(frac=1.0, random_state=seed)  # exports are rarely in arrival order
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "export.csv", index=False)
    return folder / "export.csv"


def flat_source(categorical: list[str], numeric: list[str], signed: list[str]) -> dict:
    """The `source` section of a one-table export `data/export.csv` (ids in "Lead Id", the
    label in "Converted") with these attribute columns and no title or e-mail."""
    return {
        "uri": "data",
        "tables": {"leads": "export", "activities": None, "outcomes": None},
        "columns": {"lead_id": "Lead Id", "created_at": None, "converted_at": None},
        "label": {"column": "Converted"},
        "attributes": {
            "categorical": categorical,
            "numeric": numeric,
            "signed": signed,
            "job_title": None,
            "email": None,
        },
    }


FLAT_CONFIG = {
    "source": {
        "uri": "data",
        "tables": {"leads": "export", "activities": None, "outcomes": None},
        "columns": {"lead_id": "Lead Id", "created_at": None, "converted_at": None},
        "label": {"column": "Converted"},
        "missing_values": ["Select"],
        "attributes": {
            "categorical": ["Industry", "Country", "Lead Source", "Sales Status"],
            "numeric": ["Employees"],
            "job_title": "Job Title",
            "email": "Email",
        },
    },
    "split": {"method": "order", "order_column": "Lead Number"},
    "rules": "rules.yaml",
}

FLAT_RULES = """\
mql_threshold: 30
attribute_rules:
  - name: director_or_above
    field: seniority
    in: [director, vp, c_level]
    points: 20
  - name: referral
    field: Lead Source
    equals: referral
    points: 30
  - name: big_company
    field: Employees
    range: [500, null]
    points: 10
"""


#: Where tests find PostgreSQL: a maintenance URL; each test gets a database of its own.
PG_ADMIN_URI = os.environ.get("LEADSCORE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_problem() -> str | None:
    import sqlalchemy as sa

    from leadscore.io import uris

    try:
        engine = uris.create_engine(PG_ADMIN_URI, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def require_postgres() -> None:
    """Skip on a user's machine without PostgreSQL; fail under CI, where it must be there."""
    problem = _pg_problem()
    if problem is None:
        return
    message = f"PostgreSQL not reachable at {PG_ADMIN_URI} ({problem})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI must run the PostgreSQL tests, not skip them")
    pytest.skip(f"{message}; start it or point LEADSCORE_TEST_PG at one")


@contextlib.contextmanager
def fresh_pg_database(prefix: str = "leadscore_t"):
    """A new, empty PostgreSQL database (URL without a driver), dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    from leadscore.io import uris

    require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = uris.create_engine(PG_ADMIN_URI, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(uris.normalise_uri(PG_ADMIN_URI)).set(database=name)
    try:
        yield url.render_as_string(hide_password=False).replace("+psycopg", "", 1)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_uri():
    """A fresh PostgreSQL database for one test (`postgresql://.../leadscore_t_<hex>`)."""
    with fresh_pg_database() as uri:
        yield uri


def mlflow_client(uri: str):
    """A client of one tracking store and its registry.

    Both URIs are given: MLflow keeps the last configured registry in the environment
    (MLFLOW_REGISTRY_URI), so a client given only the tracking URI can read another
    store's registry after an in-process run.
    """
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def payload_of(batch, lead, email: str) -> dict:
    """A lead as a form handler would post it: its fields and recent activities."""
    row = batch.crm.leads.set_index("lead_id").loc[lead]
    acts = batch.crm.activities
    # The lookback and what came after the as-of, which must not count, as in the batch.
    acts = acts[
        (acts["lead_id"] == lead) & (acts["occurred_at"] >= batch.as_of - pd.Timedelta(days=200))
    ]
    attributes = {
        name: None if pd.isna(row[name]) else float(row[name]) if name == "employees" else row[name]
        for name in ("industry", "country", "lead_source", "employees", "job_title")
    }  # fmt: skip
    return {
        "created_at": row["created_at"].isoformat() + "Z",
        "attributes": {**attributes, "email": email},
        "activities": [
            {
                "occurred_at": a.occurred_at.isoformat() + "+00:00",
                "activity_type": a.activity_type,
                "detail": None if pd.isna(a.detail) else a.detail,
            }
            for a in acts.itertuples()
        ],
        "as_of": batch.as_of.isoformat() + "Z",
    }


def sqlite_table(db: Path, table: str = "lead_scores") -> pd.DataFrame:
    """A whole table of a SQLite file (the demo's published scores, by default)."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(f"SELECT * FROM {table}"), conn)
    finally:
        engine.dispose()


def demo_variant(
    workdir: Path, name: str, source: dict | None = None, extra: dict | None = None
) -> Path:
    """A copy of the demo's project file with `source` keys and top-level keys replaced."""
    import yaml

    cfg = yaml.safe_load((workdir / "leadscore.yaml").read_text())
    if source is not None:
        cfg["source"].update(source)
        cfg["source"]["ground_truth"] = None
    cfg.update(extra or {})
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def open_lead_ids(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> set[str]:
    """Ids of the leads a timestamped source holds open as of `as_of` (the batch's rule:
    created in the year before it, not converted before it), from the tables themselves."""
    leads, outcomes = tables["leads"], tables["outcomes"]
    created = pd.to_datetime(leads["created_at"])
    converted = leads["lead_id"].isin(
        outcomes.loc[pd.to_datetime(outcomes["converted_at"]) < as_of, "lead_id"]
    )
    open_ = (created < as_of) & (created >= as_of - pd.Timedelta(days=365)) & ~converted
    return set(leads.loc[open_, "lead_id"].astype(str))


def write_project(folder: Path, config: dict, rules: str) -> Path:
    """A project file and its rule file (rules.yaml) in `folder`."""
    (folder / "rules.yaml").write_text(rules)
    path = folder / "leadscore.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def invoke_json(runner, args: list[str]) -> tuple[int, dict, str]:
    """A command run in process with --json: exit code, its summary ({} if none), output."""
    from leadscore.apps.cli import app

    result = runner.invoke(app, [*args, "--json"])
    stdout = result.stdout.strip().splitlines()
    summary = json.loads(stdout[-1]) if stdout and stdout[-1].startswith("{") else {}
    return result.exit_code, summary, result.output


@contextlib.contextmanager
def trained_project(runner, kind: str, build, folder: Path):
    """The project `build(folder, pg)` writes (`pg`: a fresh PostgreSQL database for the
    kind "postgresql", else None), trained through the CLI: (project, summary)."""
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(fresh_pg_database()) if kind == "postgresql" else None
        project = build(folder, pg)
        code, summary, output = invoke_json(runner, ["train", "-c", str(project.path)])
        assert code == 0, output[-3000:]
        yield project, summary
        shutil.rmtree(folder / "mlartifacts", ignore_errors=True)


def without_keys(config):
    """The project's config with the service's key check and audit log off: for tests of
    what the service answers, not of who may call it (tests/integration/test_service_keys.py)."""
    service = config.service.model_copy(update={"auth": "off", "audit_log": None})
    return config.model_copy(update={"service": service})


class Receiver:
    """A webhook receiver on 127.0.0.1: `ok` (200), `fail` (500), or `hold` (the first
    request waits until `release`), recording every request it got."""

    def __init__(self, mode: str = "ok", port: int = 0) -> None:
        self.mode = mode
        self.requests: list[dict] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                if receiver.mode == "hold" and not receiver.arrived.is_set():
                    receiver.arrived.set()
                    receiver.release.wait(60)
                self.send_response(500 if receiver.mode == "fail" else 200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def keys(self) -> list[str]:
        return [r["headers"]["Idempotency-Key"] for r in self.requests]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def direct_review_months(
    history: pd.DataFrame, outcomes: pd.DataFrame, horizon_days: int, months: list[str]
) -> pd.DataFrame:
    """The review's monthly figures computed straight from the published history table and
    the outcomes, with plain group-bys (what `leadscore review` must agree with)."""
    from sklearn.metrics import roc_auc_score

    h = history.assign(
        lead=history["lead_id"].astype(str), day=pd.to_datetime(history["as_of_date"])
    )
    h["is_mql"] = h["is_mql"].astype(bool)
    converted = (
        outcomes.dropna(subset=["converted_at"])
        .assign(lead=outcomes["lead_id"].astype(str))
        .groupby("lead")["converted_at"]
        .min()
        .pipe(lambda s: pd.to_datetime(s, utc=True).dt.tz_localize(None))
    )
    horizon = pd.Timedelta(days=horizon_days)

    def within(first: pd.Series) -> int:
        at = converted.reindex(first.index)
        return int(((at >= first) & (at < first + horizon)).sum())

    model = h["conversion_probability"].notna()
    # The backlog is no one's first flag: what the first run (and a model's first run) found.
    first_mql = h[h["is_mql"]].groupby("lead")["day"].min()
    first_mql = first_mql[first_mql != h["day"].min()]
    first_a = h[model & (h["tier"] == "A")].groupby("lead")["day"].min()
    first_a = first_a[(first_a != h["day"].min()) & (first_a != h.loc[model, "day"].min())]
    rows = []
    for month in months:
        period = pd.Period(month, freq="M")
        mqls = first_mql[first_mql.dt.to_period("M") == period]
        tier_a = first_a[first_a.dt.to_period("M") == period]
        in_month = h[h["day"].dt.to_period("M") == period].sort_values("day")
        snap = in_month.groupby("lead").first()
        at = converted.reindex(snap.index)
        y = ((at >= snap["day"]) & (at < snap["day"] + horizon)).to_numpy()
        both = 0 < y.sum() < len(y)
        # The model on each lead's first score by a model in the month.
        by_model = in_month[in_month["conversion_probability"].notna()].groupby("lead").first()
        at_m = converted.reindex(by_model.index)
        y_m = ((at_m >= by_model["day"]) & (at_m < by_model["day"] + horizon)).to_numpy()
        rows.append(
            {
                "month": month,
                "leads": len(snap),
                "rule_mqls": len(mqls),
                "rule_mql_conversions": within(mqls),
                "tier_as": len(tier_a),
                "tier_a_conversions": within(tier_a),
                "conversions": int(y.sum()),
                "volume": int(snap["is_mql"].sum()),
                "rules_captured": int(y[snap["is_mql"].to_numpy()].sum()),
                "rule_roc_auc": roc_auc_score(y, snap["rule_score"]) if both else None,
                "model_roc_auc": (
                    roc_auc_score(y_m, by_model["conversion_probability"])
                    if 0 < y_m.sum() < len(y_m)
                    else None
                ),
            }
        )
    return pd.DataFrame(rows)
