"""A disk spool: batches the transport could not deliver, kept across a process restart.

One file per batch (`<ns>-<pid>-<n>.batch`: a JSON object of keys and messages), written to a
temporary name and renamed, so a crash never leaves a half batch that would be read back. Read
oldest first; deleted once delivered. Bounded by `max_bytes`. One spool folder per process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

Message = tuple[str, bytes]


class _Batch(msgspec.Struct):
    keys: list[str]
    values: list[msgspec.Raw]


class Spool:
    def __init__(self, folder: str | os.PathLike[str], max_bytes: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._seq = 0

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*.batch"))

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def put(self, messages: Sequence[Message]) -> bool:
        """Write one batch; False (nothing written) when the spool would exceed `max_bytes`."""
        data = msgspec.json.encode(
            _Batch([k for k, _ in messages], [msgspec.Raw(v) for _, v in messages])
        )
        if self.size() + len(data) > self.max_bytes:
            return False
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.batch"
        tmp = self.folder / (name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.folder / name)
        return True

    @staticmethod
    def read(path: Path) -> list[Message]:
        """The batch in `path`; [] for a file that is not a batch (it is then deleted)."""
        try:
            batch = msgspec.json.decode(path.read_bytes(), type=_Batch)
        except (OSError, msgspec.DecodeError):
            path.unlink(missing_ok=True)
            return []
        return [(k, bytes(v)) for k, v in zip(batch.keys, batch.values, strict=True)]
