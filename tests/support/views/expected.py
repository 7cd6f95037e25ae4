"""What the warehouse must hold, computed from the simulator's ground truth, and the checkers.

Each checker returns a list of differences (empty when the warehouse agrees), so a test can
also show that a checker fails on a warehouse that is wrong (the negative controls).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipeline.devtools.simulate.org import Bucket, GroundTruth

QUANTILES = (0.5, 0.95, 0.99)
DD_RELATIVE_ACCURACY = 0.01  # quantilesDD(0.01, ...) in 0003

ROLLUP_SQL = """
SELECT team, capability, event_type, toUnixTimestamp(bucket) AS bucket,
       sum(events) AS events, uniqExactMerge(users) AS users, sum(errors) AS errors,
       toUnixTimestamp64Milli(min(first_seen)) AS first_seen,
       toUnixTimestamp64Milli(max(last_seen)) AS last_seen,
       quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(latency_ms) AS latency,
       sum(latency_ms_sum) AS latency_ms_sum, sumMap(statuses) AS statuses,
       sum(production_deploys) AS production_deploys,
       sum(production_failures) AS production_failures,
       sum(models_registered) AS models_registered, sum(gpu_hours) AS gpu_hours,
       sum(durations) AS durations, sum(duration_s_sum) AS duration_s_sum,
       sumMap(outcome_count) AS outcome_count, sumMap(outcome_value) AS outcome_value
FROM {table}
{where}
GROUP BY team, capability, event_type, bucket
"""


def millis(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def monday(at: datetime) -> str:
    day = at.astimezone(UTC).date()
    return (day - timedelta(days=day.weekday())).isoformat()


def close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-6)


def quantile_ok(got: float, values: list[float], q: float) -> bool:
    """quantileDD returns the value of rank floor(q * (n - 1)) within its relative accuracy."""
    ordered = sorted(values)
    exact = ordered[math.floor(q * (len(ordered) - 1))]
    return abs(got - exact) <= DD_RELATIVE_ACCURACY * abs(exact) + 1e-9


def _bucket_diff(got: dict[str, Any], want: Bucket) -> list[str]:
    out = []
    plain = {
        "events": want.events,
        "users": len(want.users),
        "errors": want.errors,
        "production_deploys": want.production_deploys,
        "production_failures": want.production_failures,
        "models_registered": want.models_registered,
        "durations": want.durations,
    }
    for name, value in plain.items():
        if int(got[name]) != value:
            out.append(f"{name} {got[name]} != {value}")
    assert want.first_seen is not None and want.last_seen is not None
    if int(got["first_seen"]) != millis(want.first_seen):
        out.append(f"first_seen {got['first_seen']} != {millis(want.first_seen)}")
    if int(got["last_seen"]) != millis(want.last_seen):
        out.append(f"last_seen {got['last_seen']} != {millis(want.last_seen)}")
    for name, total in (
        ("gpu_hours", want.gpu_hours),
        ("duration_s_sum", want.duration_s_sum),
        ("latency_ms_sum", sum(want.latencies)),
    ):
        if not close(float(got[name]), total):
            out.append(f"{name} {got[name]} != {total}")
    if {k: int(v) for k, v in got["statuses"].items()} != dict(want.statuses):
        out.append(f"statuses {got['statuses']} != {dict(want.statuses)}")
    if {k: int(v) for k, v in got["outcome_count"].items()} != dict(want.outcome_count):
        out.append(f"outcome_count {got['outcome_count']} != {dict(want.outcome_count)}")
    values = got["outcome_value"]
    if set(values) != set(want.outcome_value) or not all(
        close(float(values[k]), v) for k, v in want.outcome_value.items()
    ):
        out.append(f"outcome_value {values} != {want.outcome_value}")
    if want.latencies:
        for q, value in zip(QUANTILES, got["latency"], strict=True):
            if value is None or not quantile_ok(float(value), want.latencies, q):
                out.append(
                    f"latency p{round(q * 100)} {value} off for {len(want.latencies)} values"
                )
    return out


def rollup_diff(
    rows: list[dict[str, Any]],
    expected: dict[tuple[str, str, str, datetime], Bucket],
    since: datetime | None = None,
) -> list[str]:
    """Differences between rollup rows (ROLLUP_SQL) and the truth (buckets from `since` on)."""
    want = {
        (team, capability, kind, round(bucket.timestamp())): value
        for (team, capability, kind, bucket), value in expected.items()
        if since is None or bucket >= since
    }
    got = {(r["team"], r["capability"], r["event_type"], int(r["bucket"])): r for r in rows}
    problems = [f"missing {key}" for key in sorted(want.keys() - got.keys())]
    problems += [f"unexpected {key}" for key in sorted(got.keys() - want.keys())]
    for key in sorted(want.keys() & got.keys()):
        problems += [f"{key}: {p}" for p in _bucket_diff(got[key], want[key])]
    return problems


# --- facts and DORA -------------------------------------------------------------------------


def _t(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def deployments(truth: GroundTruth) -> dict[str, dict[str, Any]]:
    """Expected deployments rows by event_id."""
    out = {}
    for d in truth.deployments:
        commits = sorted(datetime.fromisoformat(c["committed_at"]) for c in d.get("commits", []))
        leads = [max(0.0, (d["at"] - c).total_seconds()) for c in commits]
        out[d["event_id"]] = {
            "deployment_id": d["deployment_id"],
            "team": d["team"],
            "capability": d["capability"],
            "environment": d["environment"],
            "status": d["status"],
            "deployed_at": millis(d["at"]),
            "commits": len(commits),
            "first_commit_at": millis(commits[0]) if commits else None,
            "lead_time_s": max(leads) if leads else None,
            "lead_times": sorted(leads),
        }
    return out


def incident_restores(truth: GroundTruth) -> dict[str, dict[str, Any]]:
    """Expected incident_restores rows by incident_id (opened and resolved events folded)."""
    folded: dict[str, dict[str, Any]] = {}
    for i in truth.incidents:
        row = folded.setdefault(
            i["incident_id"],
            {"team": i["team"], "capability": i["capability"], "opened": None, "resolved": None},
        )
        opened, resolved = _t(i["opened_at"]), _t(i.get("resolved_at"))
        if row["opened"] is None or (opened is not None and opened < row["opened"]):
            row["opened"] = opened
        if resolved is not None and (row["resolved"] is None or resolved > row["resolved"]):
            row["resolved"] = resolved
    for row in folded.values():
        row["time_to_restore_s"] = (
            max(0.0, (row["resolved"] - row["opened"]).total_seconds()) if row["resolved"] else None
        )
    return folded


def dora_weekly(truth: GroundTruth) -> dict[tuple[str, str], dict[str, Any]]:
    """Expected dora_weekly rows keyed (team, week), by the standard definitions (0011): a
    deployment went live (succeeded or rolled_back); a change failure (failed_deployments) is a
    deployment rolled back or named by an incident's caused_by_deployment."""
    linked = {i.get("caused_by_deployment") for i in truth.incidents} - {None, ""}
    acc: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"deployments": 0, "failed": 0, "days": set(), "leads": [], "restores": []}
    )
    for d in deployments(truth).values():
        if d["environment"] != "production":
            continue
        at = datetime.fromtimestamp(d["deployed_at"] / 1000, UTC)
        row = acc[d["team"], monday(at)]  # a week with only failed attempts still has a row
        if d["status"] not in ("succeeded", "rolled_back"):
            continue
        row["deployments"] += 1
        row["failed"] += d["status"] == "rolled_back" or d["deployment_id"] in linked
        row["days"].add(at.date())
        row["leads"] += d["lead_times"]
    for i in incident_restores(truth).values():
        if i["time_to_restore_s"] is not None:
            acc[i["team"], monday(i["opened"])]["restores"].append(i["time_to_restore_s"])
    return {
        key: {
            "deployments": row["deployments"],
            "deploy_days": len(row["days"]),
            "failed_deployments": row["failed"],
            "change_failure_rate": row["failed"] / row["deployments"]
            if row["deployments"]
            else None,
            "commits": len(row["leads"]),
            "lead_time_median_s": statistics.median(row["leads"]) if row["leads"] else None,
            "incidents_restored": len(row["restores"]),
            "time_to_restore_median_s": (
                statistics.median(row["restores"]) if row["restores"] else None
            ),
        }
        for key, row in acc.items()
    }


def ml_team_summary(truth: GroundTruth) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in truth.trainings:
        runs[t["team"]].append(t)
    out = {}
    for team, mine in runs.items():
        status = [r["status"] for r in mine]
        succeeded, failed = status.count("succeeded"), status.count("failed")
        registered = [r["at"] for r in mine if r.get("registered_model")]
        first = min(r["at"] for r in mine)
        out[team] = {
            "trainings": len(mine),
            "succeeded": succeeded,
            "failed": failed,
            "cancelled": status.count("cancelled"),
            "success_rate": succeeded / (succeeded + failed) if succeeded + failed else None,
            "duration_median_s": statistics.median(r["duration_s"] for r in mine),
            "gpu_hours": sum(r.get("gpu_hours", 0.0) for r in mine),
            "models_registered": len(registered),
            "first_training_at": millis(first),
            "first_registered_at": millis(min(registered)) if registered else None,
            "time_to_first_registered_model_s": (
                (min(registered) - first).total_seconds() if registered else None
            ),
        }
    return out


def weeks_used(truth: GroundTruth) -> dict[tuple[str, str], set[str]]:
    """(team, capability) -> the Mondays of the weeks it was used (events that count as use)."""
    used: dict[tuple[str, str], set[str]] = defaultdict(set)
    for team, capability, day in truth.uses:
        used[team, capability].add((day - timedelta(days=day.weekday())).isoformat())
    return used


def as_date(text: str) -> date:
    return date.fromisoformat(str(text)[:10])
