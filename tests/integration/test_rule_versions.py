"""Every run records the rule file it used (issue: marketing's monthly review reads which
version scored which month): its SHA-256 on the published run's row and in MLflow, its text
in the rule files table."""

from __future__ import annotations

import hashlib

from leadscore.config import load_config
from leadscore.io.publish import ScoreTables, read_rule_versions
from leadscore.lifecycle.registry import Registry


def test_the_demo_run_records_its_rule_file(demo) -> None:
    workdir, _ = demo
    config = load_config(workdir / "leadscore.yaml")
    raw = config.rules_path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    versions = read_rule_versions(config.publish_uri, ScoreTables.of(config))
    assert len(versions) >= 1 and set(versions["rules_sha256"]) == {sha}
    assert set(versions["rules_text"]) == {raw.decode("utf-8")}
    registry = Registry.of(config)
    champion = registry.champion()
    assert registry.run_params(champion.run_id)["rules_sha256"] == sha
    scoring = registry.client.search_runs(
        [registry.experiment_id()], "tags.`leadscore.kind` = 'scoring'"
    )
    assert scoring and all(r.data.params["rules_sha256"] == sha for r in scoring)
