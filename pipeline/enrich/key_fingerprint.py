"""One pseudonym key per warehouse: its fingerprint is stored, a different key is refused.

Without this, a process that starts with another key (a pod whose `<home>` is new, a worker
without `UPTAKE_PSEUDONYM_KEY` on another host) would write other user keys for the same users:
distinct-user counts and retention would silently double. `pseudonymizer_for()` builds the
settings' pseudonymizer, refusing a placeholder key and a missing key where a key file cannot
be shared; `require_key_fingerprint()` records the key's fingerprint on first use (migration
0013) and raises `KeyMismatch` when the warehouse already holds another one.
"""

from __future__ import annotations

import socket

from pipeline.config.safety import is_demo_secret, pseudonym_key_required
from pipeline.config.settings import Settings, SettingsError
from pipeline.enrich.pseudonym import Pseudonymizer
from pipeline.warehouse.connection import Warehouse, WarehouseError

TABLE = "pseudonym_key_fingerprint"


class KeyMismatch(SettingsError):
    """The pseudonym key differs from the one the warehouse's user keys were made with."""


def pseudonymizer_for(settings: Settings) -> Pseudonymizer:
    """The pseudonymizer of `settings`: UPTAKE_PSEUDONYM_KEY, else `<home>/pseudonym.key`.

    Raises `SettingsError` for a placeholder key, and when no key is set but the processes
    cannot share a key file (a ClickHouse server, UPTAKE_WRITER=kafka)."""
    key = settings.catalog.pseudonym_key.reveal()
    if key and is_demo_secret(key):
        raise SettingsError(
            "UPTAKE_PSEUDONYM_KEY is a placeholder or a demo value published in Uptake's "
            "repository; generate one with `openssl rand -hex 32`"
        )
    why = pseudonym_key_required(settings)
    if why:
        raise SettingsError(
            f"UPTAKE_PSEUDONYM_KEY is not set and {why}: every process would create its own "
            "random key and count each user once per key. Set the same secret in every process "
            "(`openssl rand -hex 32`); an existing deployment keeps the key its warehouse recorded "
            f"(the key of {settings.catalog.pseudonym_key_file} on the first worker's host)"
        )
    try:
        return Pseudonymizer.from_secret_or_file(key, settings.catalog.pseudonym_key_file)
    except ValueError as exc:
        raise SettingsError(f"UPTAKE_PSEUDONYM_KEY: {exc}") from None


def require_key_fingerprint(warehouse: Warehouse, pseudonyms: Pseudonymizer) -> None:
    """Record the key's fingerprint on first use; raise `KeyMismatch` if another is recorded.

    Two processes that record different keys at once both see both rows; the earliest wins and
    the other process refuses, so one key stays."""
    if not warehouse.table_exists(TABLE):
        raise WarehouseError(f"the warehouse has no {TABLE} table yet: run `uptake migrate`")
    mine = pseudonyms.fingerprint()
    recorded = _recorded(warehouse)
    if not recorded:
        warehouse.insert_columns(
            TABLE, [[mine], [socket.gethostname()]], ["fingerprint", "recorded_by"]
        )
        recorded = _recorded(warehouse)
    first, host = recorded[0]
    if first != mine:
        raise KeyMismatch(
            f"the pseudonym key differs from the one this warehouse's user keys were made with "
            f"(fingerprint {mine[:12]}… here, {first[:12]}… recorded by {host or 'a process'}): "
            "a process with another key would count every user twice. Set UPTAKE_PSEUDONYM_KEY "
            "to the warehouse's key (or copy its pseudonym.key into this process's "
            "UPTAKE_HOME); see docs/deploy.md#security"
        )


def _recorded(warehouse: Warehouse) -> list[tuple[str, str]]:
    rows = warehouse.rows(
        f"SELECT fingerprint, recorded_by FROM {TABLE} ORDER BY recorded_at, fingerprint"
    )
    return [(str(fingerprint), str(host)) for fingerprint, host in rows]
