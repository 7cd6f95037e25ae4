"""Entities from a running Backstage backend's catalog API, as another team catalog source.

`BackstageCatalogApi.fetch()` reads every Group, User and Component through
`GET {base}/api/catalog/entities/by-query` (Backstage's paginated query endpoint): the first
request carries the kind filters and `limit`, each next one only the `cursor` of
`pageInfo.nextCursor` (and `limit`), until no cursor comes back. A token, when set, is sent as
`Authorization: Bearer <token>` (a Backstage static external-access token, or a user token).

`read()` returns the entities as a YAML stream (one JSON document per entity, sorted by
reference, so an unchanged catalog gives the same bytes), which the ordinary Backstage reader
parses: the same validation and the same warnings as for files. Locations the backend serves
are not followed: the backend has already read their targets.

Contract: blocking I/O with a timeout per request; call it off the event loop (the catalog
watcher's thread). Any failure (network, HTTP status, an answer that is not Backstage's)
raises CatalogError naming the URL; the token never appears in a message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.catalog.errors import CatalogError

API_SOURCE_PREFIX = "backstage-api:"
"""How the API's entities are named among the team files (`backstage-api:host:port`)."""
QUERY_PATH = "/api/catalog/entities/by-query"
KINDS = ("group", "user", "component")
_MAX_PAGES = 100_000  # a cursor loop that never ends is a broken backend, not a big catalog


@dataclass(frozen=True)
class BackstageCatalogApi:
    """A Backstage backend to read entities from; `base_url` is e.g. `https://backstage.corp`
    (or that with `/api/catalog`)."""

    base_url: str
    token: str = field(default="", repr=False)
    page_size: int = 500
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"a Backstage URL must start with http:// or https:// and name a host, "
                f"not {self.base_url!r}"
            )
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1")

    @property
    def query_url(self) -> str:
        base = self.base_url.rstrip("/")
        if base.endswith("/api/catalog"):
            base = base[: -len("/api/catalog")]
        return base + QUERY_PATH

    @property
    def source(self) -> Path:
        """The key of this source among the team files, and the name errors give it."""
        return Path(API_SOURCE_PREFIX + urllib.parse.urlsplit(self.base_url).netloc)

    def fetch(self) -> list[dict[str, Any]]:
        """Every Group, User and Component the backend holds, page after page."""
        first = [("filter", f"kind={kind}") for kind in KINDS] + [("limit", str(self.page_size))]
        query = urllib.parse.urlencode(first)
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            page = self._get(f"{self.query_url}?{query}")
            batch = page.get("items")
            if not isinstance(batch, list) or not all(isinstance(e, dict) for e in batch):
                raise CatalogError(
                    "not a Backstage catalog answer: no list of entities in 'items'",
                    source=self.query_url,
                )
            items.extend(batch)
            info = page.get("pageInfo") or {}
            cursor = info.get("nextCursor") if isinstance(info, dict) else None
            if not cursor:
                return items
            if cursor in seen:
                raise CatalogError(
                    "the backend returned the same cursor twice", source=self.query_url
                )
            seen.add(cursor)
            query = urllib.parse.urlencode([("cursor", cursor), ("limit", str(self.page_size))])
        raise CatalogError(f"more than {_MAX_PAGES} pages", source=self.query_url)

    def read(self) -> bytes:
        """The entities as a YAML stream of JSON documents, in a stable order."""

        def ref(entity: dict[str, Any]) -> tuple[str, str, str]:
            meta = entity.get("metadata") if isinstance(entity.get("metadata"), dict) else {}
            assert isinstance(meta, dict)
            return (
                str(entity.get("kind", "")).lower(),
                str(meta.get("namespace", "default")).lower(),
                str(meta.get("name", "")).lower(),
            )

        documents = [
            json.dumps(entity, indent=1, sort_keys=True, ensure_ascii=False)
            for entity in sorted(self.fetch(), key=ref)
        ]
        return ("\n---\n".join(documents) + "\n").encode("utf-8")

    def _get(self, url: str) -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token:
            request.add_unredirected_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            hint = ": check UPTAKE_BACKSTAGE_TOKEN" if exc.code in (401, 403) else ""
            raise CatalogError(
                f"Backstage answered HTTP {exc.code} {exc.reason}{hint}", source=self.query_url
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CatalogError(f"cannot reach Backstage: {reason}", source=self.query_url) from None
        try:
            page = json.loads(body)
        except ValueError as exc:
            raise CatalogError(
                f"not a Backstage catalog answer: not JSON ({exc})", source=self.query_url
            ) from None
        if not isinstance(page, dict):
            raise CatalogError(
                "not a Backstage catalog answer: not a JSON object", source=self.query_url
            )
        return page
