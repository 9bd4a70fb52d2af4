"""On-demand scoring through real processes: `leadscore score --lead-id` and `leadscore
serve` over HTTP, each answer the nightly demo_batch's own for the same lead."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import httpx
import pandas as pd
from conftest import CLI, assert_same_as_batch, payload_of, run_cli, sample_leads

from leadscore.io import publish


def test_cli_scores_leads_on_demand_without_publishing(demo, demo_batch, cli_env) -> None:
    workdir, _ = demo
    before = publish.read_scores(demo_batch.config.publish_uri, demo_batch.config.publish.table)
    lead, other = sample_leads(demo_batch, 2)[:2]
    args = ["score", "-c", "leadscore.yaml", "--lead-id", str(lead), "--lead-id", str(other)]
    as_of = ["--as-of", str(demo_batch.as_of.date())]
    result = run_cli([*args, *as_of, "--json"], cli_env, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert [a["lead_id"] for a in summary["leads"]] == [lead, other]
    for answer in summary["leads"]:
        lead_id = answer["lead_id"]
        assert_same_as_batch(
            answer, demo_batch.scores.loc[lead_id], demo_batch.published.loc[lead_id]
        )
    text = run_cli([*args, *as_of], cli_env, workdir)
    assert text.returncode == 0, text.stderr[-3000:]
    p = demo_batch.scores.loc[lead, "conversion_probability"]
    assert f"lead {lead}: probability {p:.3f}, percentile" in text.stdout
    reasons = demo_batch.scores.loc[lead, "reasons_up"]
    assert f"  up:   {reasons}" in text.stdout
    assert "nothing published" in text.stderr
    after = publish.read_scores(demo_batch.config.publish_uri, demo_batch.config.publish.table)
    pd.testing.assert_frame_equal(after, before)
    missing = run_cli(["score", "-c", "leadscore.yaml", "--lead-id", "987654321"], cli_env, workdir)
    assert missing.returncode == 2
    assert "not found" in missing.stderr and "fix:" in missing.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_leadscore_serve_answers_over_http(demo, demo_batch, cli_env, tmp_path) -> None:
    workdir, summary = demo
    # A key, made as a user would; the service refuses callers without one.
    created = run_cli(["keys", "create", "--name", "e2e", "--scope", "score"], cli_env, workdir)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    port = _free_port()
    log_out, log_err = (tmp_path / "serve.out").open("w"), (tmp_path / "serve.err").open("w")
    command = [*CLI, "serve", "-c", "leadscore.yaml", "--port", str(port)]
    server = subprocess.Popen(command, cwd=workdir, env=cli_env, stdout=log_out, stderr=log_err)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (tmp_path / "serve.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "the service did not come up in 300 s"
            try:
                health = httpx.get(f"{base}/health", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert health.json()["model_version"] == summary["model_version"]
        lead = sample_leads(demo_batch, 1)[0]
        as_of = demo_batch.as_of.isoformat() + "Z"
        refused = httpx.get(f"{base}/leads/{lead}/score", timeout=60)
        assert refused.status_code == 401, refused.text
        answer = httpx.get(
            f"{base}/leads/{lead}/score", params={"as_of": as_of}, headers=auth, timeout=60
        )
        assert answer.status_code == 200, answer.text
        assert_same_as_batch(
            answer.json(), demo_batch.scores.loc[lead], demo_batch.published.loc[lead]
        )
        email = "jane.doe.secret@acme-corp.example"
        posted = httpx.post(
            f"{base}/score", json=payload_of(demo_batch, lead, email), headers=auth, timeout=60
        )
        assert posted.status_code == 200, posted.text
        assert_same_as_batch(posted.json(), demo_batch.scores.loc[lead], None)
        missing = httpx.get(f"{base}/leads/987654321/score", headers=auth, timeout=60)
        assert missing.status_code == 404
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
        log_out.close()
        log_err.close()
    logs = (tmp_path / "serve.out").read_text() + (tmp_path / "serve.err").read_text()
    assert f"GET /leads/{lead}/score" in logs  # the access log is on ...
    assert "jane.doe" not in logs and "acme-corp" not in logs  # ... but never shows bodies
    assert "Traceback" not in logs
    assert key not in logs
    audit = (workdir / "leadscore-audit.log").read_text()  # the project's audit log
    assert '"key_name": "e2e"' in audit and '"route": "/score"' in audit
    assert "987654321" not in audit and "jane.doe" not in audit and key not in audit
