"""Filters on a dashboard variable that holds a name (team, capability), safe for any name.

Names come from emitters. Grafana's `:singlequote` and `:sqlstring` formats escape quotes but
not backslashes, which ClickHouse honours in string literals, so a name ending in a backslash
(or holding `\\'`) would end the literal early and change the query. `:percentencode` leaves
only `A-Z a-z 0-9 - _ . ~ %` (Grafana's `encodeURIComponentStrict`), which no literal can be
broken by, and `decodeURLComponent` turns it back into the name byte for byte. A multi-value
variable is encoded as `{a,b}` (Grafana's glob form); names hold no comma or brace (the
contract's name rule, docs/events.md#names), so the split is exact.
"""

from __future__ import annotations


def decoded(variable: str) -> str:
    """The SQL string expression of a single-value variable's name."""
    return f"decodeURLComponent('${{{variable}:percentencode}}')"


def name_is(column: str, variable: str) -> str:
    """`column` equals the single value of `variable`."""
    return f"{column} = {decoded(variable)}"


def name_in(column: str, variable: str) -> str:
    """`column` is one of the values of multi-value `variable`; All (or none) matches every
    row (`$__conditionalAll`)."""
    chosen = f"splitByChar(',', trim(BOTH '{{}}' FROM {decoded(variable)}))"
    return f"$__conditionalAll(has({chosen}, {column}), ${variable})"


ORG_UNIT_VARIABLE = "org_unit"
TEAMS_VARIABLE = "teams"  # multi-value; the drill-down's single team is `team`


def chosen_teams(column: str = "team") -> str:
    """`column` holds one of the chosen teams (multi-value `$teams`) and a team under one of the
    chosen organisation units (multi-value `$org_unit`: a group of today's hierarchy, at any
    depth, as `team_groups` has it). Each variable at All matches every row."""
    units = f"splitByChar(',', trim(BOTH '{{}}' FROM {decoded(ORG_UNIT_VARIABLE)}))"
    under = f"{column} IN (SELECT team FROM team_groups WHERE hasAny(groups, {units}))"
    return f"{name_in(column, TEAMS_VARIABLE)} AND $__conditionalAll({under}, ${ORG_UNIT_VARIABLE})"
