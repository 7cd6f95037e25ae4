"""The local broker without a JVM: a stale pid file is cleaned up, and the jar cache (ensure_jars)
with a fake Maven, needing neither java nor a network.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.devtools import broker as broker_mod
from pipeline.devtools.broker import BrokerError, LocalBroker, ensure_jars
from tests.support.ports import free_ports


def test_stale_pid_file_is_cleaned_up(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    b = LocalBroker(tmp_path / "kafka", port=port, controller_port=controller_port)
    b.home.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    b.pid_file.write_text(f"{dead.pid}\n")
    assert not b.status(timeout=1).running
    assert not b.pid_file.exists()
    b.pid_file.write_text("garbage\n")
    assert b.stop() is False
    assert not b.pid_file.exists()


class FakeMaven:
    """Stands in for subprocess.run: 'copies' the given jar names into -DoutputDirectory."""

    def __init__(self, jars: list[str], returncode: int = 0) -> None:
        self.jars = jars
        self.returncode = returncode
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        out = Path(next(a for a in cmd if a.startswith("-DoutputDirectory=")).split("=", 1)[1])
        if self.returncode == 0:
            for name in self.jars:
                (out / name).write_bytes(name.encode())
        return subprocess.CompletedProcess(cmd, self.returncode, "", "[ERROR] no network")


@pytest.fixture
def fake_pom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project>v1</project>")
    monkeypatch.setattr(broker_mod, "POM_FILE", pom)
    monkeypatch.setattr(broker_mod.shutil, "which", lambda name: f"/usr/bin/{name}")
    return pom


def test_ensure_jars_runs_maven_only_when_needed(
    tmp_path: Path, fake_pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    maven = FakeMaven(["a-1.jar", "b-1.jar"])
    monkeypatch.setattr(broker_mod.subprocess, "run", maven)
    quiet = lambda _: None  # noqa: E731

    lib = ensure_jars(cache, progress=quiet)
    assert lib == cache.resolve() / "lib"
    assert sorted(p.name for p in lib.iterdir()) == ["a-1.jar", "b-1.jar"]
    assert len(maven.calls) == 1
    assert maven.calls[0][0] == "/usr/bin/mvn"
    assert "dependency:copy-dependencies" in maven.calls[0]
    assert "-DincludeScope=runtime" in maven.calls[0]
    assert (cache / "pom.sha256").is_file()

    assert ensure_jars(cache, progress=quiet) == lib  # marker matches: no Maven
    assert len(maven.calls) == 1

    # The pom changed: Maven again, the new jar set replaces the old one.
    fake_pom.write_text("<project>v2</project>")
    maven.jars = ["a-2.jar", "b-1.jar"]
    ensure_jars(cache, progress=quiet)
    assert len(maven.calls) == 2
    assert sorted(p.name for p in lib.iterdir()) == ["a-2.jar", "b-1.jar"]

    # lib emptied behind our back: Maven again even though the marker matches.
    for jar in lib.iterdir():
        jar.unlink()
    ensure_jars(cache, progress=quiet)
    assert len(maven.calls) == 3
    assert sorted(p.name for p in lib.iterdir()) == ["a-2.jar", "b-1.jar"]
    assert not [p for p in cache.iterdir() if p.name.startswith("lib-")]  # temp dirs gone


def test_ensure_jars_maven_failure_writes_no_marker(
    tmp_path: Path, fake_pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(broker_mod.subprocess, "run", FakeMaven(["a.jar"], returncode=1))
    with pytest.raises(BrokerError, match="Maven failed") as info:
        ensure_jars(cache, progress=lambda _: None)
    assert "no network" in str(info.value)
    assert not (cache / "pom.sha256").exists()


def test_ensure_jars_names_the_package_when_mvn_is_missing(
    tmp_path: Path, fake_pom: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_mod.shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match="apt-get install maven"):
        ensure_jars(tmp_path / "cache", progress=lambda _: None)
