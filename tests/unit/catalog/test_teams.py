"""TeamCatalog: validity intervals, merging snapshots (re-orgs), lookups and warehouse rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.catalog.backstage import parse_backstage
from pipeline.catalog.errors import CatalogError
from pipeline.catalog.ownership import parse_ownership_csv
from pipeline.catalog.teams import (
    OPEN_END,
    UNOWNED,
    Assignment,
    Fact,
    TeamCatalog,
    TeamSnapshot,
    parse_instant,
    to_millis,
)
from tests.support.catalog import component, group, org, t

T1 = t("2025-01-01")
T2 = t("2025-03-01")
T3 = t("2025-05-01")
MS = timedelta(milliseconds=1)


def snap(text: str, source: str = "catalog-info.yaml") -> TeamSnapshot:
    return parse_backstage(text, source)


def first(text: str, at: datetime = T1) -> TeamCatalog:
    return TeamCatalog.empty().merge_snapshot(snap(text), at)


# -- re-org: history is kept ---------------------------------------------------------------


def test_a_service_moving_teams_is_attributed_by_event_time() -> None:
    before = first(org(owner_of_api="payments"))
    after = before.merge_snapshot(snap(org(owner_of_api="checkout")), T2)

    assert after.owner_at("payments-api", T1) == "payments"
    assert after.owner_at("payments-api", T2 - MS) == "payments"
    assert after.owner_at("payments-api", T2) == "checkout"  # half-open: the move instant is B's
    assert after.owner_at("payments-api", T3) == "checkout"
    # the catalog before the reload is untouched (immutable) and still says payments
    assert before.owner_at("payments-api", T3) == "payments"


def test_history_rows_keep_both_intervals_of_a_moved_service() -> None:
    after = first(org("payments")).merge_snapshot(snap(org("checkout")), T2)

    rows = [r for r in after.rows_for_clickhouse() if r[:2] == ("service", "payments-api")]

    assert rows == [
        ("service", "payments-api", "payments", "", T1, T2),
        ("service", "payments-api", "checkout", "", T2, OPEN_END),
    ]


def test_an_unchanged_owner_keeps_its_interval_across_reloads() -> None:
    catalog = first(org())
    for at in (T2, T3):
        catalog = catalog.merge_snapshot(snap(org()), at)

    [only] = catalog.history("service", "payments-api")
    assert (only.team, only.valid_from, only.valid_to) == ("payments", T1, None)
    assert only.source.endswith("(Component 'payments-api')")
    assert catalog.rows_for_clickhouse() == first(org()).rows_for_clickhouse()


def test_a_service_that_leaves_the_catalog_is_unowned_from_then_but_keeps_its_past() -> None:
    without_api = org().replace(component("payments-api", "payments"), "")
    catalog = first(org()).merge_snapshot(snap(without_api), T2)

    assert catalog.owner_at("payments-api", T1) == "payments"
    assert catalog.owner_at("payments-api", T2) == UNOWNED
    assert [a.valid_to for a in catalog.history("service", "payments-api")] == [T2]


def test_moving_back_and_forth_makes_three_intervals() -> None:
    catalog = (
        first(org("payments"))
        .merge_snapshot(snap(org("checkout")), T2)
        .merge_snapshot(snap(org("payments")), T3)
    )

    assert [
        (a.team, a.valid_from, a.valid_to) for a in catalog.history("service", "payments-api")
    ] == [
        ("payments", T1, T2),
        ("checkout", T2, T3),
        ("payments", T3, None),
    ]


def test_unknown_service_and_times_before_the_first_snapshot_are_unowned() -> None:
    catalog = first(org())

    assert catalog.owner_at("no-such-service", T2) == UNOWNED
    assert catalog.owner_at("payments-api", T1 - MS) == UNOWNED  # nothing was known then
    assert TeamCatalog.empty().owner_at("payments-api", T1) == UNOWNED


def test_a_first_snapshot_merged_at_an_earlier_time_covers_late_events() -> None:
    catalog = TeamCatalog.empty().merge_snapshot(snap(org()), T1 - timedelta(days=7))

    assert catalog.owner_at("payments-api", T1 - timedelta(days=3)) == "payments"


def test_a_team_moving_to_another_parent_changes_ancestors_by_time() -> None:
    two_parents = (
        group("engineering") + group("commerce", "engineering") + group("trust", "engineering")
    )
    before = first(two_parents + group("fraud", "commerce"))
    after = before.merge_snapshot(snap(two_parents + group("fraud", "trust")), T2)

    assert after.parent_of("fraud", T1) == "commerce"
    assert after.ancestors("fraud", T1) == ("commerce", "engineering")
    assert after.ancestors("fraud", T3) == ("trust", "engineering")
    assert after.parent_of("engineering", T3) is None
    assert after.parent_of("nobody", T3) is None


def test_users_move_with_their_membership() -> None:
    before = first(org())
    moved = (
        org()
        .replace("members: [payments.eng0]", "members: []")
        .replace("members: [checkout.eng0]", "members: [checkout.eng0, payments.eng0]")
    )
    after = before.merge_snapshot(snap(moved), T2)

    assert after.team_of_user_at("payments.eng0", T1) == "payments"
    assert after.team_of_user_at("payments.eng0", T3) == "checkout"
    assert after.team_of_user_at("nobody", T3) is None


# -- explicit dates ------------------------------------------------------------------------


def test_dated_rows_are_taken_as_written_even_in_the_past() -> None:
    csv = (
        "kind,name,team,valid_from,valid_to\n"
        "service,fraud-stream,risk,2024-01-15,2025-03-01\n"
        "service,fraud-stream,fraud,2025-03-01,\n"
    )
    catalog = TeamCatalog.empty().merge_snapshot(parse_ownership_csv(csv, "o.csv"), T3)

    assert catalog.owner_at("fraud-stream", t("2024-06-01")) == "risk"
    assert catalog.owner_at("fraud-stream", T3) == "fraud"
    assert catalog.owner_at("fraud-stream", t("2024-01-01")) == UNOWNED


def test_a_dated_correction_rewrites_the_past_and_retracts_the_old_row() -> None:
    catalog = first(org())  # payments-api: payments from T1
    correction = snap(org()) + parse_ownership_csv(
        "kind,name,team,valid_from,valid_to\n"
        "service,payments-api,checkout,2024-12-01,2025-02-01\n"
        "service,payments-api,payments,2025-02-01,\n",
        "o.csv",
    )
    corrected = catalog.merge_snapshot(correction, T3)

    assert corrected.owner_at("payments-api", t("2025-01-15")) == "checkout"
    assert corrected.owner_at("payments-api", T3) == "payments"
    assert corrected.retracted_rows(catalog) == [
        ("service", "payments-api", "payments", "", T1, OPEN_END)
    ]
    assert catalog.retracted_rows(catalog) == []


def test_facts_without_a_start_do_not_change_the_past() -> None:
    catalog = first(org("payments")).merge_snapshot(
        snap(org("payments"))
        + parse_ownership_csv(
            "kind,name,team,valid_from,valid_to\nservice,payments-api,payments,,2025-04-01\n",
            "o.csv",
        ),
        T2,
    )

    assert catalog.owner_at("payments-api", T1) == "payments"
    assert catalog.owner_at("payments-api", t("2025-04-01")) == "payments"  # Backstage: open


def test_a_fact_ending_before_the_snapshot_time_without_a_start_says_nothing() -> None:
    stale = TeamSnapshot((Fact("service", "s", "a", valid_to=T1, source="o.csv:2"),))

    assert TeamCatalog.empty().merge_snapshot(stale, T2).assignments == ()


# -- errors --------------------------------------------------------------------------------


def test_two_files_disagreeing_about_now_is_an_error_naming_both() -> None:
    disagreeing = snap(org("payments")) + parse_ownership_csv(
        "kind,name,team,valid_from,valid_to\nservice,payments-api,checkout,2024-01-01,\n",
        "ownership.csv",
    )

    with pytest.raises(CatalogError) as caught:
        TeamCatalog.empty().merge_snapshot(disagreeing, T2)

    message = str(caught.value)
    assert caught.value.entry == "service 'payments-api'"
    assert "ownership.csv:2" in message and "catalog-info.yaml:" in message
    assert "'checkout'" in message and "'payments'" in message


def test_a_team_that_is_not_a_declared_group_is_an_error() -> None:
    # The strict check, for snapshots built by hand; loading files drops such facts instead.
    snapshot = TeamSnapshot(
        (Fact("team", "payments", "payments"), Fact("service", "s", "paymnets", source="x:1"))
    )
    with pytest.raises(CatalogError) as caught:
        TeamCatalog.empty().merge_snapshot(snapshot, T1)

    assert caught.value.entry == "service 's'"
    assert "team 'paymnets' is not a declared group" in str(caught.value)
    assert caught.value.source == "x:1"


def test_a_parent_that_is_not_a_declared_group_is_dropped_with_a_warning() -> None:
    catalog = first(group("payments", "enginering") + group("engineering"))

    assert catalog.parent_of("payments", T1) is None
    [w] = catalog.warnings
    assert w.kind == "unresolved_reference"
    assert "group:default/enginering is not in the catalog" in str(w)


def test_without_any_group_teams_need_not_be_declared() -> None:
    csv = "kind,name,team,valid_from,valid_to\nservice,s,anything,,\n"
    catalog = TeamCatalog.empty().merge_snapshot(parse_ownership_csv(csv, "o.csv"), T1)

    assert catalog.owner_at("s", T2) == "anything"
    assert catalog.teams_at(T2) == {"anything"}


def test_parent_cycles_are_an_error() -> None:
    csv = (
        "kind,name,team,valid_from,valid_to\n"
        "team-parent,a,b,2025-01-01,\n"
        "team-parent,b,a,2025-02-01,\n"
    )
    with pytest.raises(
        CatalogError, match=r"cycle at 2025-02-01T00:00:00\+00:00: (a -> b -> a|b -> a -> b)"
    ):
        TeamCatalog.empty().merge_snapshot(parse_ownership_csv(csv, "o.csv"), T3)


def test_naive_times_are_refused() -> None:
    catalog = first(org())
    with pytest.raises(ValueError, match="timezone-aware"):
        catalog.owner_at("payments-api", datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        TeamCatalog.empty().merge_snapshot(snap(org()), datetime(2025, 1, 1))


def test_overlapping_intervals_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        TeamCatalog(
            (
                Assignment("service", "s", "a", "", T1, None),
                Assignment("service", "s", "b", "", T2, None),
            )
        )


def test_fact_and_assignment_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="kind"):
        Fact("widget", "s", "a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="own name"):
        Fact("team", "payments", "checkout")
    with pytest.raises(ValueError, match="only team rows have a parent"):
        Fact("service", "s", "a", parent="p")
    with pytest.raises(ValueError, match="after valid_from"):
        Assignment("service", "s", "a", "", T2, T1)


# -- lookups -------------------------------------------------------------------------------


def test_teams_at_are_the_leaf_teams_that_exist_then() -> None:
    catalog = first(org()).merge_snapshot(snap(org() + group("search", "engineering")), T2)

    assert catalog.teams_at(T1) == {"payments", "checkout"}
    assert catalog.teams_at(T3) == {"payments", "checkout", "search"}
    assert catalog.groups_at(T3) == {"engineering", "payments", "checkout", "search"}
    assert catalog.teams_at(T1 - MS) == frozenset()


def test_teams_under_a_group_are_its_leaf_teams() -> None:
    text = (
        group("engineering")
        + group("commerce", "engineering")
        + group("payments", "commerce")
        + group("checkout", "commerce")
        + group("search", "engineering")
    )
    catalog = first(text)

    assert catalog.teams_under("engineering", T2) == {"payments", "checkout", "search"}
    assert catalog.teams_under("commerce", T2) == {"payments", "checkout"}
    assert catalog.teams_under("search", T2) == {"search"}
    assert catalog.teams_under("unknown", T2) == frozenset()


def test_lookups_default_to_now() -> None:
    catalog = first(org(), at=datetime.now(UTC) - timedelta(hours=1))

    assert catalog.parent_of("payments") == "engineering"
    assert catalog.ancestors("payments") == ("engineering",)


def test_names_and_history() -> None:
    catalog = first(org())

    assert catalog.names("service") == {"payments-api", "checkout-web"}
    assert catalog.history("service", "nope") == ()


# -- warehouse rows ------------------------------------------------------------------------


def test_rows_round_trip_through_from_rows() -> None:
    catalog = first(org("payments")).merge_snapshot(snap(org("checkout")), T2)

    again = TeamCatalog.from_rows(catalog.rows_for_clickhouse())

    assert again.rows_for_clickhouse() == catalog.rows_for_clickhouse()
    assert again.owner_at("payments-api", T1) == "payments"
    # history read back from the warehouse is merged like any other
    reloaded = again.merge_snapshot(snap(org("checkout")), T3)
    assert reloaded.rows_for_clickhouse() == catalog.rows_for_clickhouse()


def test_from_rows_takes_naive_times_as_utc_and_checks_rows() -> None:
    naive = (
        "service",
        "s",
        "a",
        "",
        datetime(2025, 1, 1),
        datetime(2299, 12, 31, 23, 59, 59, 999000),
    )

    catalog = TeamCatalog.from_rows([naive])

    assert catalog.history("service", "s")[0].valid_to is None
    assert catalog.owner_at("s", T2) == "a"
    with pytest.raises(ValueError, match="datetimes"):
        TeamCatalog.from_rows([("service", "s", "a", "", "2025-01-01", "x")])
    with pytest.raises(ValueError, match="kind"):
        TeamCatalog.from_rows([("widget", "s", "a", "", T1, OPEN_END)])


def test_team_rows_carry_their_parent() -> None:
    rows = first(org()).rows_for_clickhouse()

    assert ("team", "payments", "payments", "engineering", T1, OPEN_END) in rows
    assert ("team", "engineering", "engineering", "", T1, OPEN_END) in rows
    assert ("user", "payments.eng0", "payments", "", T1, OPEN_END) in rows


def test_times_are_kept_to_the_millisecond_like_clickhouse() -> None:
    at = datetime(2025, 1, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))

    catalog = first(org(), at=at)

    assert catalog.history("service", "payments-api")[0].valid_from == t("2025-01-01T08:00:00.123")
    assert to_millis(at).microsecond == 123000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01", "2025-03-01T00:00:00+00:00"),
        ("2025-03-01T09:30:00Z", "2025-03-01T09:30:00+00:00"),
        ("2025-03-01T11:30:00+02:00", "2025-03-01T09:30:00+00:00"),
    ],
)
def test_parse_instant(text: str, expected: str) -> None:
    assert parse_instant(text).isoformat() == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2025-03-01T09:30:00", "no UTC offset"),
        ("2025-02-30", "not an ISO date"),
        ("yesterday", "not an ISO date"),
        (20250301, "got int"),
    ],
)
def test_parse_instant_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_instant(value)
