"""The reliability suite's end-of-run summary: hostile inputs tried per target (a pytest hook,
so it runs after every test whatever their order, and is no test itself)."""

from __future__ import annotations

import sys
from typing import Any


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """Print the figures docs/reliability.md quotes, when a fuzzing module ran."""
    module = sys.modules.get("tests.support.hostile")
    if module is None or not module.TRIED:
        return
    lines = ["hostile-input fuzzing: inputs tried per target"]
    lines += [f"  {name}: {count}" for name, count in sorted(module.TRIED.items())]
    lines += ["outcomes:"] + [f"  {name}: {count}" for name, count in sorted(module.SEEN.items())]
    terminalreporter.write_line("\n".join(lines))
