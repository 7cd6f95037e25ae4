"""The adoption views of 0008-0010 against the simulator's ground truth, every row.

The session's warehouse (conftest.py: the simulator's events through the real worker) is read
view by view; adoption_truth.py recomputes each view in plain Python from the generated events
and the catalogs. Counts must be equal, rates equal within 1e-9.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pytest

from pipeline.catalog.capabilities import load_capabilities, parse_capabilities
from tests.integration.views.conftest import Loaded, Warehouse, repo_file
from tests.support.views import adoption_truth

pytestmark = pytest.mark.integration


CATALOG = repo_file("config", "capabilities.yaml")
USE_DAYS_SQL = (
    "SELECT team, capability, day, events, "
    "toUnixTimestamp64Milli(first_seen) AS first_seen FROM capability_use_days"
)


def _recompute(loaded: Loaded, catalog_text: str | None = None) -> adoption_truth.Truth:
    wh = loaded.warehouse
    ids = {str(e["event_id"]): str(e["user"]) for e in loaded.events if e.get("user")}
    keys = wh.rows(
        "SELECT user_key, toString(any(event_id)) AS id FROM events "
        "WHERE user_key != '' GROUP BY user_key"
    )
    user_keys = {ids[r["id"]]: r["user_key"] for r in keys}
    assert len(user_keys) == len({e["user"] for e in loaded.events if e.get("user")})
    team_rows = wh.rows(
        "SELECT kind, name, team, parent, toString(valid_from) AS valid_from, "
        "toString(valid_to) AS valid_to, retracted FROM team_catalog FINAL"
    )
    capabilities = (
        load_capabilities(CATALOG)
        if catalog_text is None
        else parse_capabilities(catalog_text, str(CATALOG))
    )
    return adoption_truth.build(
        loaded.events, user_keys, capabilities, team_rows, datetime.now(UTC)
    )


@pytest.fixture(scope="module")
def recomputed(loaded: Loaded) -> adoption_truth.Truth:
    return _recompute(loaded)


def _use_days(t: adoption_truth.Truth) -> dict[Any, dict[str, Any]]:
    return {
        key: {"events": v["events"], "first_seen": round(v["first_seen"].timestamp() * 1000)}
        for key, v in adoption_truth.capability_use_days(t).items()
    }


def _day(value: Any) -> date:
    return date.fromisoformat(str(value)[:10])


def _compare(
    rows: list[dict[str, Any]],
    keys: tuple[str, ...],
    want: dict[Any, dict[str, Any]],
) -> list[str]:
    got = {tuple(_day(r[k]) if k in ("day", "week") else r[k] for k in keys): r for r in rows}
    problems = [f"missing {k}" for k in sorted(want.keys() - got.keys())][:20]
    problems += [f"unexpected {k}" for k in sorted(got.keys() - want.keys())][:20]
    for key in sorted(want.keys() & got.keys()):
        for column, value in want[key].items():
            have = got[key][column]
            if isinstance(value, float) or column.endswith(("rate", "rate_28d", "share")):
                ok = (have is None and value is None) or (
                    have is not None
                    and value is not None
                    and math.isclose(float(have), value, rel_tol=1e-9, abs_tol=1e-12)
                )
            else:
                ok = have == value
            if not ok:
                problems.append(f"{key} {column}: view {have!r} != truth {value!r}")
    return problems


def test_capability_use_days_equal_the_truth(
    warehouse: Warehouse, recomputed: adoption_truth.Truth
) -> None:
    rows = warehouse.rows(USE_DAYS_SQL)
    want = _use_days(recomputed)
    assert len(want) > 500
    assert {c for _t, c, _d in want} >= {"api-gateway", "in-house-api", "self-managed-ci"}
    assert _compare(rows, ("team", "capability", "day"), want) == []


def test_adoption_rates_daily_equal_the_truth(
    warehouse: Warehouse, recomputed: adoption_truth.Truth
) -> None:
    want = adoption_truth.adoption_rates_daily(recomputed)
    assert any(0 < v["adopted_target_teams"] < v["target_teams"] for v in want.values())
    rows = warehouse.rows("SELECT * FROM adoption_rates_daily")
    assert _compare(rows, ("capability", "day"), want) == []


def test_adoption_daily_equals_the_truth(
    warehouse: Warehouse, recomputed: adoption_truth.Truth
) -> None:
    want = adoption_truth.adoption_daily(recomputed)
    assert any(c not in recomputed.declared for c, _d in want)  # undeclared: every leaf team
    rows = warehouse.rows("SELECT * FROM adoption_daily")
    assert _compare(rows, ("capability", "day"), want) == []


def test_adoption_weekly_equals_the_truth(
    warehouse: Warehouse, recomputed: adoption_truth.Truth
) -> None:
    want = adoption_truth.adoption_weekly(recomputed)
    rows = warehouse.rows("SELECT * FROM adoption_weekly")
    assert _compare(rows, ("capability", "week"), want) == []


def test_adoption_by_platform_equals_the_truth(
    warehouse: Warehouse, recomputed: adoption_truth.Truth
) -> None:
    want = adoption_truth.adoption_by_platform(recomputed)
    assert {p for p, _d in want} == {"developer-infrastructure", "data-ml", "business-capability"}
    rows = warehouse.rows("SELECT * FROM adoption_by_platform")
    assert _compare(rows, ("platform", "day"), want) == []


def test_adoption_by_group_equals_the_truth(
    warehouse: Warehouse, recomputed: adoption_truth.Truth
) -> None:
    want = adoption_truth.adoption_by_group(recomputed)
    assert len({g for g, _c, _d in want}) > 1
    rows = warehouse.rows("SELECT * FROM adoption_by_group")
    assert _compare(rows, ("group_name", "capability", "day"), want) == []


def test_developer_adoption_weekly_equals_the_truth(
    warehouse: Warehouse, recomputed: adoption_truth.Truth
) -> None:
    want = adoption_truth.developer_adoption_weekly(recomputed)
    assert any(v["active_members_28d"] for v in want.values())
    rows = warehouse.rows("SELECT * FROM developer_adoption_weekly")
    assert _compare(rows, ("team", "capability", "week"), want) == []


def test_the_comparison_sees_the_apis_rule_and_a_wrong_count(
    loaded: Loaded, warehouse: Warehouse, recomputed: adoption_truth.Truth
) -> None:
    """Negative controls: recomputed with api-gateway counting only `orders` calls, the truth
    no longer matches the view (the apis rule is applied by the recomputation); one count off
    in one row of adoption_rates_daily is reported."""
    narrowed = CATALOG.read_text(encoding="utf-8").replace(
        "apis: [orders, profile]", "apis: [orders]", 1
    )
    assert "apis: [orders]" in narrowed
    problems = _compare(
        warehouse.rows(USE_DAYS_SQL),
        ("team", "capability", "day"),
        _use_days(_recompute(loaded, narrowed)),
    )
    assert problems and all("api-gateway" in p for p in problems), problems[:5]

    want = adoption_truth.adoption_rates_daily(recomputed)
    rows = warehouse.rows("SELECT * FROM adoption_rates_daily")
    rows[0]["adopted_target_teams"] += 1
    assert len(_compare(rows, ("capability", "day"), want)) == 1
