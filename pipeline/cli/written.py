"""Commands that write files from code and check them (`dashboards generate|check`,
`rules render|check`): the two actions, their `--dir`, and how a check reports."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def write_and_check(
    cmd: argparse.ArgumentParser, write: str, write_help: str, check_help: str, dir_help: str
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add the actions `write` and `check` to `cmd`, both with `--dir`; return both parsers."""
    actions = cmd.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    writer = actions.add_parser(write, help=write_help)
    checker = actions.add_parser("check", help=check_help)
    for action in (writer, checker):
        action.add_argument("--dir", type=Path, default=None, help=dir_help)
    return writer, checker


def failed(problems: Sequence[str], remedy: str) -> bool:
    """Print each problem and then `remedy` to stderr; True when there was any."""
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(remedy, file=sys.stderr)
    return bool(problems)
