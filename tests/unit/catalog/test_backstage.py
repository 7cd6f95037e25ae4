"""Backstage catalog files: entities, entity references, validity annotations and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.catalog.backstage import EntityRef, load_backstage, parse_backstage, parse_entity_ref
from pipeline.catalog.errors import CatalogError, CatalogWarning
from pipeline.catalog.teams import Fact, TeamCatalog
from tests.support.catalog import component, group, org, t, user


def facts(text: str) -> set[tuple[str, str, str, str]]:
    return {(f.kind, f.name, f.team, f.parent) for f in parse_backstage(text, "c.yaml").facts}


def warnings(text: str) -> list[CatalogWarning]:
    return list(parse_backstage(text, "c.yaml").warnings)


def error(text: str) -> CatalogError:
    with pytest.raises(CatalogError) as caught:
        parse_backstage(text, "c.yaml")
    return caught.value


def test_groups_components_and_members_become_facts() -> None:
    assert facts(org()) == {
        ("team", "engineering", "engineering", ""),
        ("team", "payments", "payments", "engineering"),
        ("team", "checkout", "checkout", "engineering"),
        ("service", "payments-api", "payments", ""),
        ("service", "checkout-web", "checkout", ""),
        ("user", "payments.eng0", "payments", ""),
        ("user", "checkout.eng0", "checkout", ""),
    }


def test_facts_name_their_file_line_and_entity() -> None:
    [api] = [f for f in parse_backstage(org(), "c.yaml").facts if f.name == "payments-api"]

    assert api.source == "c.yaml:30 (Component 'payments-api')"
    assert api.valid_from is None and api.valid_to is None


@pytest.mark.parametrize(
    "ref",
    [
        "group:default/payments",
        "group:payments",
        "payments",
        "default/payments",
        "Group:default/payments",
        "GROUP:DEFAULT/PAYMENTS",
    ],
)
def test_owner_entity_ref_forms(ref: str) -> None:
    assert ("service", "payments-api", "payments", "") in facts(org(owner_of_api=ref))


def test_parse_entity_ref() -> None:
    assert parse_entity_ref("group:default/payments", default_kind="user") == EntityRef(
        "group", "default", "payments"
    )
    assert parse_entity_ref(" jdoe ", default_kind="user") == EntityRef("user", "default", "jdoe")
    for bad in ["", ":payments", "group:", "group:default/", "a/b/c", "pay ments", 7]:
        with pytest.raises(ValueError):
            parse_entity_ref(bad, default_kind="group")


def test_children_set_the_parent_and_may_agree_with_spec_parent() -> None:
    text = (
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: engineering\n"
        "spec:\n  type: organization\n  children: [group:default/payments, checkout]\n"
        + group("payments", "engineering")  # both directions, agreeing
        + group("checkout")  # only the parent lists it
    )

    assert facts(text) >= {
        ("team", "payments", "payments", "engineering"),
        ("team", "checkout", "checkout", "engineering"),
    }


def test_the_first_member_of_is_the_users_team() -> None:
    text = group("risk", members=["risk.eng0"]) + group("fraud", members=["risk.eng0"])
    text += user("risk.eng0", "group:default/risk", "fraud")

    assert ("user", "risk.eng0", "risk", "") in facts(text)
    assert ("user", "risk.eng0", "fraud", "") not in facts(text)


def test_a_user_entity_without_member_of_takes_the_group_listing_it() -> None:
    text = group("risk", members=["user:default/jdoe"]) + (
        "---\napiVersion: backstage.io/v1beta1\nkind: User\nmetadata:\n  name: jdoe\nspec: {}\n"
    )

    assert ("user", "jdoe", "risk", "") in facts(text)


def test_other_kinds_and_empty_documents_are_skipped() -> None:
    text = (
        "---\n---\napiVersion: backstage.io/v1alpha1\nkind: System\nmetadata:\n  name: x\n"
        "spec:\n  owner: nobody\n---\napiVersion: backstage.io/v1alpha1\nkind: Location\n"
        "metadata:\n  name: y\nspec:\n  targets: [./other.yaml]\n"
        "---\napiVersion: scaffolder.backstage.io/v1beta3\nkind: Template\nmetadata:\n"
        "  name: z\n" + component("s", "payments") + group("payments")
    )

    assert facts(text) == {("service", "s", "payments", ""), ("team", "payments", "payments", "")}


def test_validity_annotations() -> None:
    text = component("s", "payments").replace(
        "  name: s\n",
        "  name: s\n  annotations:\n    uptake.dev/valid-from: 2025-01-01\n"
        "    uptake.dev/valid-to: '2025-03-01T12:00:00+01:00'\n",
    )

    [fact] = parse_backstage(text, "c.yaml").facts

    assert fact == Fact(
        "service", "s", "payments", "", t("2025-01-01"), t("2025-03-01T11:00"), fact.source
    )
    catalog = TeamCatalog.empty().merge_snapshot(parse_backstage(text, "c.yaml"), t("2025-06-01"))
    assert catalog.owner_at("s", t("2025-02-01")) == "payments"
    assert catalog.owner_at("s", t("2025-04-01")) == "unowned"


def test_load_backstage_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog-info.yaml"
    path.write_text(org(), encoding="utf-8")

    snapshot = load_backstage(path)

    assert snapshot.sources == (str(path),)
    assert len(snapshot.facts) == 7


def test_load_backstage_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as caught:
        load_backstage(tmp_path / "nope.yaml")

    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: file not found"


# -- errors: each names the file, the line, the entity and the field ----------------------------


def test_owner_missing() -> None:
    e = error(component("s", "x").replace("  owner: x\n", ""))
    assert (e.source, e.line, e.entry, e.field) == ("c.yaml", 6, "Component 's'", "spec.owner")
    assert "missing" in e.message


def test_an_owner_of_another_namespace_is_another_group() -> None:
    text = org(owner_of_api="group:other-namespace/payments")

    assert not any(f.name == "payments-api" for f in parse_backstage(text, "c.yaml").facts)
    [w] = warnings(text)
    assert (w.kind, str(w)) == (
        "unresolved_reference",
        "c.yaml:37: Component 'payments-api': field 'spec.owner': "
        "group:other-namespace/payments is not in the catalog: ignored",
    )


def test_an_owner_of_another_kind_is_a_warning() -> None:
    text = group("payments") + component("s", "system:default/billing")

    assert facts(text) == {("team", "payments", "payments", "")}
    [w] = warnings(text)
    assert w.kind == "wrong_kind"
    assert "system:default/billing is a system" in str(w)


def test_owner_is_not_an_entity_ref() -> None:
    e = error(component("s", "'group:'"))
    assert (e.line, e.field) == (9, "spec.owner")
    assert "[kind:][namespace/]name" in e.message


def test_invalid_entity_name() -> None:
    e = error(component("s", "x").replace("name: s", "name: bad--name"))
    assert (e.line, e.entry, e.field) == (5, "document 1 (Component)", "metadata.name")
    assert "not a valid Backstage name" in e.message


def test_missing_metadata() -> None:
    e = error("apiVersion: backstage.io/v1alpha1\nkind: Group\nspec: {}\n")
    assert (e.line, e.entry, e.field) == (1, "document 1 (Group)", "metadata")


def test_missing_kind() -> None:
    e = error("apiVersion: backstage.io/v1alpha1\nmetadata:\n  name: x\n")
    assert (e.entry, e.field) == ("document 1", "kind")


def test_wrong_api_version() -> None:
    e = error(group("payments").replace("backstage.io/v1alpha1", "backstage.io/v2"))
    assert (e.line, e.entry, e.field) == (2, "Group 'payments'", "apiVersion")
    assert "backstage.io/v1alpha1" in e.message


def test_document_not_a_mapping() -> None:
    e = error(group("payments") + "---\n- a\n- b\n")
    assert (e.line, e.entry) == (10, "document 2")
    assert "must be a mapping" in e.message


def test_spec_not_a_mapping() -> None:
    e = error("apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: g\nspec: [1]\n")
    assert (e.line, e.field) == (5, "spec")


def test_entity_declared_twice_is_a_warning_and_the_first_is_used() -> None:
    text = group("payments") + group("payments", "engineering") + group("engineering")

    assert ("team", "payments", "payments", "") in facts(text)
    [w] = warnings(text)
    assert (w.kind, str(w)) == (
        "duplicate_entity",
        "c.yaml:10: Group 'payments': group:default/payments is declared twice "
        "(first at c.yaml:2); the first is used",
    )


def test_a_child_not_in_the_catalog_is_a_warning() -> None:
    text = group("engineering").replace("children: []", "children: [payments]")

    assert facts(text) == {("team", "engineering", "engineering", "")}
    [w] = warnings(text)
    assert (w.kind, str(w)) == (
        "unresolved_reference",
        "c.yaml:8: Group 'engineering': field 'spec.children.0': "
        "group:default/payments is not in the catalog: ignored",
    )


def test_a_child_naming_another_parent_keeps_its_own() -> None:
    text = group("a").replace("children: []", "children: [c]") + group("b") + group("c", "b")

    assert ("team", "c", "c", "b") in facts(text)
    [w] = warnings(text)
    assert w.kind == "conflicting_relation"
    assert "group:default/c names group:default/b as its spec.parent" in str(w)


def test_a_child_of_two_groups_keeps_the_first() -> None:
    text = (
        group("a").replace("children: []", "children: [c]")
        + group("b").replace("children: []", "children: [c]")
        + group("c")
    )

    assert ("team", "c", "c", "a") in facts(text)
    [w] = warnings(text)
    assert w.kind == "conflicting_relation"
    assert str(w).startswith("c.yaml:16: Group 'b': field 'spec.children.0': ")
    assert "also a child of group:default/a" in str(w)


def test_children_not_a_list() -> None:
    e = error(group("a").replace("children: []", "children: b"))
    assert (e.line, e.field) == (8, "spec.children")
    assert "must be a list" in e.message


def test_member_of_two_groups_without_a_user_entity_takes_the_first_in_sorted_order() -> None:
    text = group("b", members=["jdoe"]) + group("a", members=["jdoe"])

    assert ("user", "jdoe", "a", "") in facts(text)
    [w] = warnings(text)
    assert w.kind == "ambiguous_membership"
    assert "'a' (the first in sorted order) is used" in str(w)


def test_bad_validity_annotation() -> None:
    text = group("g").replace(
        "  name: g\n", "  name: g\n  annotations:\n    uptake.dev/valid-from: '2025-03-01T10:00'\n"
    )
    e = error(text)
    assert (e.line, e.field) == (7, "metadata.annotations.uptake.dev/valid-from")
    assert "no UTC offset" in e.message


def test_validity_annotations_in_the_wrong_order() -> None:
    text = group("g").replace(
        "  name: g\n",
        "  name: g\n  annotations:\n    uptake.dev/valid-from: '2025-03-01'\n"
        "    uptake.dev/valid-to: '2025-01-01'\n",
    )
    e = error(text)
    assert (e.line, e.field) == (8, "metadata.annotations.uptake.dev/valid-to")


def test_yaml_syntax_error_names_the_line() -> None:
    e = error(group("g") + "---\nkind: [unclosed\n")
    assert e.source == "c.yaml" and e.line == 11
    assert "not valid YAML" in e.message


def test_repeated_key_is_an_error() -> None:
    e = error(component("s", "a") + "  owner: b\n")
    assert e.line == 10
    assert "key 'owner' appears twice in one mapping (first on line 9)" in e.message


def test_group_annotations_date_the_group_and_the_members_it_lists() -> None:
    text = group("g", members=["jdoe"]).replace(
        "  name: g\n", "  name: g\n  annotations:\n    uptake.dev/valid-to: '2025-03-01'\n"
    )

    dated = {(f.kind, f.name): f.valid_to for f in parse_backstage(text, "c.yaml").facts}

    assert dated == {("team", "g"): t("2025-03-01"), ("user", "jdoe"): t("2025-03-01")}
