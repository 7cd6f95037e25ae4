"""Headless Chromium for report tests: Debian's `chromium`, network refused (every host resolves
to nothing), so a page that needed anything from outside would show it."""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
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


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and number of distinct colours of a screenshot (8-bit RGB/RGBA PNG)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour_type, interlace = data[24], data[25], data[28]
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, "not a Chromium screenshot"
    bpp = 3 if colour_type == 2 else 4
    idat, at = b"", 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        if data[at + 4 : at + 8] == b"IDAT":
            idat += data[at + 8 : at + 8 + length]
        at += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * bpp)
    image = np.zeros((height, width * bpp), dtype=np.int64)
    previous = np.zeros(width * bpp, dtype=np.int64)
    for y in range(height):
        kind, line = int(raw[y, 0]), raw[y, 1:].astype(np.int64)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum per channel
            row = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (line + previous) % 256
        else:  # Average, Paeth: byte by byte
            row = _unfilter(kind, line.tolist(), previous.tolist(), bpp)
        image[y] = row
        previous = row
    pixels = image.reshape(height * width, bpp)[:, :3]
    colours = np.unique(pixels[:, 0] * 65_536 + pixels[:, 1] * 256 + pixels[:, 2])
    return width, height, len(colours)


def _unfilter(kind: int, line: list[int], above: list[int], bpp: int) -> np.ndarray:
    row = [0] * len(line)
    for i, value in enumerate(line):
        left = row[i - bpp] if i >= bpp else 0
        up, corner = above[i], above[i - bpp] if i >= bpp else 0
        if kind == 3:
            row[i] = (value + (left + up) // 2) % 256
            continue
        guess = left + up - corner
        pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
        best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
        row[i] = (value + best) % 256
    return np.array(row, dtype=np.int64)
