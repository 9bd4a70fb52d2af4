"""Review flow: marketing's monthly review from the published score history → one HTML file."""

from __future__ import annotations

from typing import Any

from prefect import flow

from leadscore.errors import DataError
from leadscore.lifecycle import run_page, summaries

try:  # imported as the `leadscore_flows` package
    from leadscore_flows import tasks
except ImportError:  # loaded by path as a Prefect entrypoint (flows/review.py:review_flow)
    import tasks  # type: ignore[no-redef]


@flow(name="review", log_prints=True)
def review_flow(
    config_path: str | None = None,
    month: str | None = None,
    out: str | None = None,
    language: str | None = None,
) -> dict[str, Any]:
    """Write the monthly review of `month` (YYYY-MM, or "previous": the calendar month before
    today; default: the newest published run's month): the MQL KPI for 12 months, the rule
    file's versions, their effect, rule diagnostics, in `language` (default report.language).
    Reads what was published and the source's outcomes; publishes nothing."""
    config = tasks.read_config(config_path)
    if language is not None:
        report = config.report.model_validate({**config.report.model_dump(), "language": language})
        config = config.model_copy(update={"report": report})
    if config.flat:
        raise DataError(
            "the monthly review needs conversion dates, and a flat export has only a label "
            f"column ('{config.source.label}')",
            "point the source at tables with leads, activities and dated outcomes "
            "(see the README, section 'Bring your own data')",
        )
    crm = tasks.load_source(config)
    review = tasks.build_review(config, crm, month)
    html = tasks.render_review(review, config)
    path = tasks.write_report(html, out or str(config.review_path(str(review.month))))
    summary = summaries.review_summary(path, review, config)
    tasks.describe_run(run_page.review_page, summary, config, None)
    return summary


if __name__ == "__main__":
    review_flow()
