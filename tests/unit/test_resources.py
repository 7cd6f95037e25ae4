"""Data files are found in a checkout and in an installed package alike (pipeline/resources.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import resources
from tests.conftest import REPO


def test_a_checkout_reads_the_repositorys_own_folders() -> None:
    assert resources.checkout() == REPO
    assert resources.folder("schemas/clickhouse") == REPO / "schemas" / "clickhouse"
    assert resources.folder("broker") == REPO / "deploy" / "local"


def test_the_packaged_copy_wins_when_it_exists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    copy = tmp_path / "_data" / "config"
    copy.mkdir(parents=True)
    monkeypatch.setattr(resources, "packaged", lambda name: tmp_path / "_data" / name)
    assert resources.folder("config") == copy


def test_no_packaged_copy_and_no_checkout_names_the_missing_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(resources, "packaged", lambda name: tmp_path / "_data" / name)
    monkeypatch.setattr(resources, "checkout", lambda: None)
    where = resources.folder("schemas/events")
    assert where == tmp_path / "_data" / "schemas/events"
    with pytest.raises(resources.ResourceMissing, match="incomplete"):
        resources.require_files(where, "*.json", "event schemas")
