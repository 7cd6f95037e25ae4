"""Developer feedback end to end: SDK -> real Kafka -> worker -> real ClickHouse -> views.

The respondent reaches the warehouse only as its pseudonymous key (the same key as the user's
usage, so the response rate can match them), the comment reaches analysts in
`feedback_responses`, and neither the comment nor the raw user id appears in /metrics.
"""

from __future__ import annotations

import signal
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from uptake_sdk import UptakeClient, api_call

from pipeline.enrich.pseudonym import Pseudonymizer
from tests.conftest import Pipeline, wait_until
from tests.support.metrics import scrape, total

pytestmark = pytest.mark.integration

SECRET = "feedback-e2e-pseudonym-secret-0123456789"
COMMENT = "zq-comment-marker: point-in-time joins are great, backfill docs thin"
RESPONDENTS = ("ana.feedback", "bo.feedback", "cy.feedback")


def test_feedback_reaches_the_views_pseudonymised_and_never_metrics(
    pipeline_env: Pipeline,
) -> None:
    pipeline_env.env["UPTAKE_PSEUDONYM_KEY"] = SECRET
    pipeline_env.run("migrate")
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    with UptakeClient(pipeline_env.env["KAFKA_BOOTSTRAP_SERVERS"],
                      pipeline_env.env["UPTAKE_EVENTS_TOPIC"], source="e2e",
                      strict=True) as client:  # fmt: skip
        for user in RESPONDENTS[:2]:  # ana and bo use feature-store; cy never does
            client.emit(api_call(capability="feature-store", team="search", user=user,
                                 api="features", operation="GET /v1/features",
                                 status_code=200, latency_ms=4.0, occurred_at=at))  # fmt: skip
        client.feedback(capability="feature-store", scale="csat", score=5, comment=COMMENT,
                        user="ana.feedback", team="search", occurred_at=at)  # fmt: skip
        client.feedback(capability="feature-store", scale="csat", score=2,
                        user="cy.feedback", team="search", occurred_at=at)  # fmt: skip
        client.feedback(capability="feature-store", scale="nps", score=3, comment=COMMENT,
                        user="bo.feedback", team="search", occurred_at=at)  # fmt: skip
        assert client.flush(30)

    worker = pipeline_env.start_worker()
    try:

        def written() -> str | None:
            if worker.poll() is not None:
                raise AssertionError(f"worker died:\n{pipeline_env.worker_log()}")
            try:
                samples = scrape(pipeline_env.metrics_url)
            except OSError:
                return None
            if total(samples, "uptake_events_accepted_total") < 5:
                return None
            with urllib.request.urlopen(pipeline_env.metrics_url, timeout=5) as response:
                return str(response.read().decode())

        metrics_text = wait_until(written, timeout=180, what="the worker to accept the events")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, pipeline_env.worker_log()

    assert "uptake_events_accepted_total" in metrics_text
    assert 'event_type="feedback"' in metrics_text, "feedback is counted by its event type"
    assert "zq-comment-marker" not in metrics_text, "a comment reached /metrics"
    assert not any(user in metrics_text for user in RESPONDENTS), "a user id reached /metrics"

    keys = Pseudonymizer.from_secret_or_file(SECRET, Path("/nonexistent"))
    responses = pipeline_env.rows(
        "SELECT user_key, scale, score, comment FROM feedback_responses ORDER BY scale, score"
    )
    assert responses == [
        {"user_key": keys.key_of("cy.feedback"), "scale": "csat", "score": 2, "comment": ""},
        {"user_key": keys.key_of("ana.feedback"), "scale": "csat", "score": 5, "comment": COMMENT},
        {"user_key": keys.key_of("bo.feedback"), "scale": "nps", "score": 3, "comment": COMMENT},
    ]
    raw = pipeline_env.rows(
        "SELECT count() AS n FROM events WHERE position(user_key, '.feedback') > 0"
    )
    assert int(raw[0]["n"]) == 0, "a raw respondent id reached ClickHouse"

    monthly = {
        r["scale"]: r
        for r in pipeline_env.rows(
            "SELECT scale, responses, respondents, csat, nps, active_users, active_respondents, "
            "response_rate FROM feedback_monthly WHERE capability = 'feature-store'"
        )
    }
    assert monthly["csat"] == {"scale": "csat", "responses": 2, "respondents": 2, "csat": 0.5,
                               "nps": None, "active_users": 2, "active_respondents": 1,
                               "response_rate": 0.5}  # fmt: skip
    assert monthly["nps"] == {"scale": "nps", "responses": 1, "respondents": 1, "csat": None,
                              "nps": -100.0, "active_users": 2, "active_respondents": 1,
                              "response_rate": 0.5}  # fmt: skip
    use = pipeline_env.rows("SELECT team, capability FROM capability_use_days")
    assert use == [{"team": "search", "capability": "feature-store"}]
