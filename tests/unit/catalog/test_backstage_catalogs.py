"""Backstage catalogs as organisations write them: several files tied by Locations and by
parent/children, namespaces, users as owners, warnings instead of refusals, and a running
Backstage backend's catalog API as a source. Fixtures: Backstage's own example catalog."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.catalog.backstage import parse_backstage
from pipeline.catalog.backstage_api import BackstageCatalogApi
from pipeline.catalog.errors import WARNING_KINDS, CatalogError
from pipeline.catalog.sources import TeamSources, load_team_snapshot, parse_team_files
from pipeline.catalog.store import TeamCatalogBuilder
from pipeline.catalog.teams import UNOWNED, TeamCatalog
from pipeline.catalog.watcher import CatalogWatcher
from pipeline.ingest.catalogs import report_warnings
from pipeline.observability.metrics import REGISTRY
from tests.support.catalog import EXAMPLES, component, group, t, user

AT = t("2025-06-01")
TOKEN = "static-token-for-tests"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of Backstage's example catalog (tests edit files in it)."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    return tmp_path / "examples"


def catalog_of(*paths: Path) -> TeamCatalog:
    return TeamCatalog.empty().merge_snapshot(load_team_snapshot(paths), AT)


def kinds(catalog: TeamCatalog | Any) -> list[str]:
    return sorted(w.kind for w in catalog.warnings)


# -- Backstage's example organisation, as Backstage lays it out -----------------------------------


def test_the_example_organisation_loads_across_files_and_locations(examples: Path) -> None:
    catalog = catalog_of(examples / "acme" / "org.yaml", examples / "all.yaml")

    assert catalog.ancestors("team-a", AT) == ("backstage", "infrastructure", "acme-corp")
    assert catalog.ancestors("team-d", AT) == ("boxoffice", "infrastructure", "acme-corp")
    assert catalog.parent_of("team-e", AT) == "boxoffice", "a parent that does not list it"
    assert catalog.teams_at(AT) == {"team-a", "team-b", "team-c", "team-d", "team-e"}
    assert catalog.teams_under("infrastructure", AT) == catalog.teams_at(AT)
    assert catalog.owner_at("podcast-api", AT) == "team-b"
    assert catalog.owner_at("wayback-archive-ingestion", AT) == "team-d"
    assert catalog.team_of_user_at("lucy.sheehan", AT) == "team-d"
    assert len(catalog.names("service")) == 12
    assert len(catalog.names("user")) == 17
    # What cannot be used is left out with a warning each; nothing else is refused.
    assert kinds(catalog) == ["location_target_missing"] * 5 + ["unresolved_reference"]
    [unresolved] = [w for w in catalog.warnings if w.kind == "unresolved_reference"]
    assert str(unresolved) == (
        f"{examples / 'components' / 'playback-order-component.yaml'}:12: "
        "Component 'playback-order': field 'spec.owner': group:default/guest is not in the "
        "catalog: ignored"
    )
    assert catalog.owner_at("playback-order", AT) == UNOWNED
    missing = [str(w) for w in catalog.warnings if w.kind == "location_target_missing"]
    assert missing[0] == (
        f"{examples / 'all.yaml'}:8: Location 'example-all': field 'spec.targets.0': "
        f"'./all-ai-resources.yaml' ({examples / 'all-ai-resources.yaml'}) does not exist: "
        "not followed"
    )


def test_a_component_owned_by_a_user_counts_for_the_users_team(examples: Path) -> None:
    catalog = catalog_of(examples / "acme" / "org.yaml", examples / "all.yaml")

    # searcher and shuffle-api: `owner: user:guest`, and guest is a member of team-a.
    assert catalog.owner_at("searcher", AT) == "team-a"
    assert catalog.owner_at("shuffle-api", AT) == "team-a"


def test_the_same_name_in_two_namespaces_is_two_entities(examples: Path) -> None:
    catalog = catalog_of(examples / "acme" / "org.yaml")

    assert catalog.team_of_user_at("guest", AT) == "team-a"
    assert catalog.team_of_user_at("development/guest", AT) == "team-a"
    assert not [w for w in catalog.warnings if w.kind == "duplicate_entity"]


def test_groups_of_one_name_in_two_namespaces_and_references_default_to_their_namespace() -> None:
    emea = "metadata:\n  name: payments\n  namespace: emea\n"
    text = (
        group("payments")
        + group("payments").replace("metadata:\n  name: payments\n", emea)
        + component("api", "payments")
        + component("emea-api", "payments").replace(
            "  name: emea-api\n", "  name: emea-api\n  namespace: emea\n"
        )
        + component("moved-api", "group:emea/payments")
        + user("jdoe", "group:emea/payments")
    )

    catalog = TeamCatalog.empty().merge_snapshot(parse_backstage(text, "c.yaml"), AT)

    assert catalog.groups_at(AT) == {"payments", "emea/payments"}
    assert catalog.owner_at("api", AT) == "payments"
    assert catalog.owner_at("emea/emea-api", AT) == "emea/payments"
    assert catalog.owner_at("moved-api", AT) == "emea/payments"
    assert catalog.team_of_user_at("jdoe", AT) == "emea/payments"
    assert catalog.warnings == ()


def test_each_step_that_used_to_refuse_the_merged_catalog_is_now_a_warning() -> None:
    # The failures in the order a merged file met them (#13): a user in two namespaces, a
    # child that is not in the catalog, a component owned by a user, an undeclared owner.
    text = (
        group("platform").replace("children: []", "children: [sre, ghost]")
        + group("sre", "platform", members=["ops"])
        + user("guest", "sre")
        + user("guest", "group:default/sre").replace(
            "  name: guest\n", "  name: guest\n  namespace: development\n"
        )
        + component("pager", "user:guest")
        + component("runbooks", "user:ops")
        + component("orphan", "nobody")
    )

    catalog = TeamCatalog.empty().merge_snapshot(parse_backstage(text, "c.yaml"), AT)

    assert catalog.parent_of("sre", AT) == "platform"
    assert catalog.owner_at("pager", AT) == "sre"
    assert catalog.owner_at("runbooks", AT) == "sre", "a member without a User entity"
    assert catalog.owner_at("orphan", AT) == UNOWNED
    assert [(w.kind, w.text.split(": ", 3)[-1]) for w in catalog.warnings] == [
        ("unresolved_reference", "group:default/ghost is not in the catalog: ignored"),
        ("unresolved_reference", "group:default/nobody is not in the catalog: ignored"),
    ]


def test_a_user_in_several_groups_gives_components_the_first_group_of_member_of() -> None:
    text = (
        group("a")
        + group("b")
        + user("jdoe", "b", "a")
        + component("s", "user:jdoe")
        + user("lone")
        + component("t", "user:lone")
    )

    snapshot = parse_backstage(text, "c.yaml")
    catalog = TeamCatalog.empty().merge_snapshot(snapshot, AT)

    assert catalog.owner_at("s", AT) == "b"
    assert catalog.owner_at("t", AT) == UNOWNED
    [w] = snapshot.warnings
    assert "user:default/lone belongs to no group of the catalog" in str(w)


def test_a_catalog_without_groups_may_name_any_team() -> None:
    snapshot = parse_backstage(component("s", "payments") + user("jdoe", "payments"), "c.yaml")

    assert {(f.kind, f.name, f.team) for f in snapshot.facts} == {
        ("service", "s", "payments"),
        ("user", "jdoe", "payments"),
    }
    assert snapshot.warnings == ()


# -- Locations -------------------------------------------------------------------------------------


def test_location_targets_relative_globs_remote_and_each_file_once(tmp_path: Path) -> None:
    (tmp_path / "teams").mkdir()
    (tmp_path / "teams" / "a.yaml").write_text(group("a", "org"))
    (tmp_path / "teams" / "b.yaml").write_text(group("b", "org"))
    (tmp_path / "org.yaml").write_text(
        group("org")
        + "---\napiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: all\n"
        "spec:\n  targets:\n    - ./teams/*.yaml\n    - teams/a.yaml\n    - ./org.yaml\n"
        "    - https://github.com/acme/catalog/blob/main/x.yaml\n"
        "    - url:https://example.com/y.yaml\n"
        "---\napiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: one\n"
        "spec:\n  type: file\n  target: ./teams/none-*.yaml\n"
    )

    contents = TeamSources((tmp_path,)).read()
    snapshot = parse_team_files(contents)

    assert sorted(contents) == [
        tmp_path / "org.yaml",
        tmp_path / "teams" / "a.yaml",
        tmp_path / "teams" / "b.yaml",
    ]
    assert {(f.name, f.parent) for f in snapshot.facts} == {("org", ""), ("a", "org"), ("b", "org")}
    assert [w.kind for w in snapshot.warnings] == [
        "location_target_remote",
        "location_target_remote",
        "location_target_missing",
    ]


def test_a_location_target_that_is_not_yaml_refuses_the_catalog(examples: Path) -> None:
    (examples / "acme" / "team-b-group.yaml").write_text("kind: Group\nmetadata: [unclosed\n")

    with pytest.raises(CatalogError) as caught:
        load_team_snapshot([examples / "acme" / "org.yaml"])

    assert caught.value.source == str(examples / "acme" / "team-b-group.yaml")
    assert "not valid YAML" in caught.value.message


# -- reloading: warnings never stop a reload, a broken file keeps the last good catalog --------


def test_a_non_yaml_file_keeps_the_last_good_catalog(examples: Path) -> None:
    published: list[TeamCatalog] = []
    errors: list[BaseException] = []
    watcher = CatalogWatcher.for_teams(
        [examples / "acme" / "org.yaml", examples / "all.yaml"],
        published.append,
        on_error=errors.append,
        clock=lambda: AT,
    )
    assert watcher.poll()
    good = watcher.current
    assert good is not None and good.owner_at("podcast-api", AT) == "team-b"

    # A file reached only through Locations is watched too.
    target = examples / "components" / "podcast-api-component.yaml"
    text = target.read_text()
    target.write_bytes(b"\x00\x01 not yaml {{{")
    with pytest.raises(CatalogError):
        watcher.poll()
    assert watcher.current is good, "the last good catalog stays in force"
    assert not watcher.poll(), "the same broken content is reported once"

    target.write_text(text.replace("owner: team-b", "owner: team-c"))
    assert watcher.poll()
    assert watcher.current is not None
    assert watcher.current.owner_at("podcast-api", AT) == "team-c"
    assert len(published) == 2


def test_warnings_are_logged_and_counted_by_kind(
    examples: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def count(kind: str) -> float:
        value = REGISTRY.get_sample_value("uptake_catalog_warnings_total", {"kind": kind})
        return value or 0.0

    before = count("location_target_missing"), count("unresolved_reference")
    catalog = catalog_of(examples / "acme" / "org.yaml", examples / "all.yaml")

    with caplog.at_level("WARNING", logger="uptake.catalog"):
        report_warnings(catalog)

    assert count("location_target_missing") == before[0] + 5
    assert count("unresolved_reference") == before[1] + 1
    exported = {
        s.labels["kind"]
        for m in REGISTRY.collect()
        for s in m.samples
        if s.name == "uptake_catalog_warnings_total"
    }
    assert set(WARNING_KINDS) <= exported, "every kind is exported from the start"
    assert sum("group:default/guest is not in the catalog" in m for m in caplog.messages) == 1


def test_user_keys_rename_owners_resolved_through_users_too(examples: Path) -> None:
    build = TeamCatalogBuilder(TeamCatalog.empty(), lambda u: f"key:{u}", timedelta(days=1))

    catalog = build(TeamSources((examples / "acme" / "org.yaml",)).read(), AT, None)

    assert catalog.team_of_user_at("key:development/guest", AT) == "team-a"
    assert catalog.team_of_user_at("guest", AT) is None
    assert catalog.warnings == ()


# -- a running Backstage backend's catalog API -------------------------------------------------


def entity(
    kind: str, name: str, spec: dict[str, Any], namespace: str = "default"
) -> dict[str, Any]:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{kind}-{name}"},
        "spec": spec,
        "relations": [],
    }


class FakeBackstage:
    """A Backstage backend's `GET /api/catalog/entities/by-query`: cursor paging, bearer auth."""

    def __init__(self, entities: list[dict[str, Any]], page_size: int = 20) -> None:
        self.entities = entities
        self.page_size = page_size
        self.requests: list[dict[str, list[str]]] = []
        self.auth: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                fake.requests.append(query)
                fake.auth.append(self.headers.get("Authorization"))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": {"name": "AuthenticationError"}})
                if url.path != "/api/catalog/entities/by-query":
                    return self._send(404, {"error": {"name": "NotFoundError"}})
                if "cursor" in query:
                    start = int(json.loads(query["cursor"][0])["offset"])
                else:
                    start = 0
                    wanted = {f.split("=", 1)[1] for f in query.get("filter", [])}
                    fake.kinds = wanted
                selected = [
                    e for e in fake.entities if e["kind"].lower() in getattr(fake, "kinds", set())
                ]
                size = int(query.get("limit", [str(fake.page_size)])[0])
                page = selected[start : start + size]
                end = start + len(page)
                info = {"nextCursor": json.dumps({"offset": end})} if end < len(selected) else {}
                return self._send(
                    200, {"items": page, "totalItems": len(selected), "pageInfo": info}
                )

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeBackstage:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


ORG = [
    entity("Group", "platform", {"type": "department", "children": ["sre", "data"]}),
    entity("Group", "sre", {"type": "team", "children": []}),
    entity("Group", "data", {"type": "team", "parent": "platform", "children": []}),
    entity("User", "ada", {"memberOf": ["sre"]}),
    entity("User", "ada", {"memberOf": ["group:default/data"]}, namespace="contractors"),
    entity("Component", "pager", {"type": "service", "lifecycle": "production", "owner": "sre"}),
    entity("Component", "lake", {"type": "service", "owner": "user:contractors/ada"}),
    entity("Location", "root", {"type": "url", "target": "https://x/catalog-info.yaml"}),
    entity("System", "ops", {"owner": "sre"}),
]


@pytest.fixture
def backstage() -> Iterator[FakeBackstage]:
    with FakeBackstage(ORG) as fake:
        yield fake


def test_the_api_source_pages_with_a_cursor_and_sends_the_token(backstage: FakeBackstage) -> None:
    api = BackstageCatalogApi(backstage.url, TOKEN, page_size=2)

    items = api.fetch()

    assert len(items) == 7  # groups, users and components; not the Location nor the System
    assert len(backstage.requests) == 4
    first, *later = backstage.requests
    assert sorted(first["filter"]) == ["kind=component", "kind=group", "kind=user"]
    assert all(set(q) == {"cursor", "limit"} for q in later)
    assert backstage.auth == [f"Bearer {TOKEN}"] * 4
    assert "static-token" not in repr(api)


def test_the_api_source_is_one_catalog_with_the_files(
    backstage: FakeBackstage, tmp_path: Path
) -> None:
    (tmp_path / "more.yaml").write_text(component("etl", "data") + component("x", "group:nobody"))
    sources = TeamSources((tmp_path,), BackstageCatalogApi(backstage.url + "/api/catalog", TOKEN))

    catalog = TeamCatalog.empty().merge_snapshot(parse_team_files(sources.read()), AT)

    assert catalog.parent_of("sre", AT) == "platform"
    assert catalog.parent_of("data", AT) == "platform"
    assert catalog.owner_at("pager", AT) == "sre"
    assert catalog.owner_at("lake", AT) == "data", "owned by a user of another namespace"
    assert catalog.owner_at("etl", AT) == "data", "a file's component, the API's group"
    assert catalog.team_of_user_at("contractors/ada", AT) == "data"
    assert kinds(catalog) == ["unresolved_reference"]
    assert sources.describe().endswith(
        f"Backstage API {backstage.url}/api/catalog/entities/by-query"
    )


def test_a_wrong_token_or_an_unreachable_backend_is_an_error_naming_the_url(
    backstage: FakeBackstage,
) -> None:
    with pytest.raises(CatalogError, match="HTTP 401 Unauthorized: check UPTAKE_BACKSTAGE_TOKEN"):
        BackstageCatalogApi(backstage.url, "wrong").fetch()
    with pytest.raises(CatalogError, match="cannot reach Backstage") as caught:
        BackstageCatalogApi("http://127.0.0.1:9", TOKEN, timeout_s=2).fetch()
    assert caught.value.source == "http://127.0.0.1:9/api/catalog/entities/by-query"
    assert "wrong" not in str(caught.value)


def test_the_watcher_reads_the_api_on_every_poll_and_rebuilds_only_on_change(
    backstage: FakeBackstage,
) -> None:
    sources = TeamSources((), BackstageCatalogApi(backstage.url, TOKEN, page_size=50))
    published: list[TeamCatalog] = []
    watcher = CatalogWatcher.for_teams((), published.append, sources=sources, clock=lambda: AT)

    assert watcher.poll()
    assert not watcher.poll(), "an unchanged answer rebuilds nothing"
    backstage.entities[5] = entity("Component", "pager", {"type": "service", "owner": "data"})
    assert watcher.poll()
    assert published[-1].owner_at("pager", AT) == "data"
    assert len(backstage.requests) == 3


def test_the_api_answer_must_be_backstages() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        BackstageCatalogApi("backstage.example")


def test_folders_and_locations_naming_the_same_files_read_each_once(examples: Path) -> None:
    # Both folders are configured, and the Locations in them name the same files again.
    contents = TeamSources((examples, examples / "acme")).read()
    catalog = TeamCatalog.empty().merge_snapshot(parse_team_files(contents), AT)

    assert len(contents) == 2 + 9 + 13  # all*.yaml, acme/*.yaml, components/*.yaml
    assert not [w for w in catalog.warnings if w.kind == "duplicate_entity"]
    assert catalog.owner_at("searcher", AT) == "team-a"
    assert catalog.ancestors("team-e", AT) == ("boxoffice", "infrastructure", "acme-corp")
