"""Headless Chromium for report tests: Debian's `chromium`, network refused (every host resolves
to nothing), so a page that needed anything from outside would show it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed: `make test` (target system-deps) installs Debian's chromium",
)


def chromium(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
    """Run headless Chromium with `args` (e.g. `--dump-dom URL`, `--screenshot=PATH URL`)."""
    assert CHROMIUM, "chromium is not installed"
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--allow-file-access-from-files",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--hide-scrollbars",
            *args,
        ],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
