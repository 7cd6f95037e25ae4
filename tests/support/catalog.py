"""Helpers shared by the catalog tests: times, and small catalog files written to tmp_path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
# Backstage's own example catalog (fixtures/backstage-examples/SOURCE.md).
EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "backstage-examples"


def t(text: str) -> datetime:
    """'2025-03-01' or '2025-03-01T10:00' as an aware UTC datetime."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def group(name: str, parent: str | None = None, members: list[str] | None = None) -> str:
    lines = [
        "---",
        "apiVersion: backstage.io/v1alpha1",
        "kind: Group",
        "metadata:",
        f"  name: {name}",
        "spec:",
        "  type: team",
        "  children: []",
    ]
    if parent:
        lines.append(f"  parent: {parent}")
    if members:
        lines.append(f"  members: [{', '.join(members)}]")
    return "\n".join(lines) + "\n"


def component(name: str, owner: str) -> str:
    return (
        "---\napiVersion: backstage.io/v1alpha1\nkind: Component\n"
        f"metadata:\n  name: {name}\nspec:\n  type: service\n  lifecycle: production\n"
        f"  owner: {owner}\n"
    )


def user(name: str, *member_of: str) -> str:
    return (
        "---\napiVersion: backstage.io/v1alpha1\nkind: User\n"
        f"metadata:\n  name: {name}\nspec:\n  memberOf: [{', '.join(member_of)}]\n"
    )


def org(owner_of_api: str = "payments") -> str:
    """A small organisation: engineering > {payments, checkout}; payments-api owned as given."""
    return (
        group("engineering")
        + group("payments", "engineering", ["payments.eng0"])
        + group("checkout", "engineering", ["checkout.eng0"])
        + component("payments-api", owner_of_api)
        + component("checkout-web", "checkout")
    )
