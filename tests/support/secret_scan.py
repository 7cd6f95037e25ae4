"""Find secret values written out literally in text: the scan of tests/unit/deploy and
tests/unit/config.

A literal secret is a value (not `${VAR}`, `$VAR`, `<...>`, `...`/`…` or empty) given to a name
ending in PASSWORD, TOKEN, _KEY or SECRET (`NAME: value`, `NAME=value`, `password = "value"`),
the default of such a variable in Compose (`${NAME:-value}`), a bearer token in an
`Authorization: Bearer ...` header, or the password of a `scheme://user:pw@` URL.
"""

from __future__ import annotations

import re

_ASSIGNED = re.compile(
    r"""(?xm)
    (?: \b[A-Z][A-Z0-9_]*(?:PASSWORD|TOKEN|_KEY|SECRET)\b ["']? [ \t]* (?::(?![?-])|=) [ \t]*
        (?:(?P<q>["'])(?P<quoted>[^"'\n]*)(?P=q) | (?P<bare>[^\s"',;)}\]]+)(?=[ \t]*(?:\#.*)?$))
      | \b[a-z_]*(?:password|token|secret)\b ["']? [ \t]* [:=] [ \t]*
        (?P<q2>["'])(?P<lower>[^"'\n]*)(?P=q2)
    )
    """
)
_COMPOSE_DEFAULT = re.compile(
    r"\$\{[A-Z0-9_]*(?:PASSWORD|TOKEN|KEY|SECRET)[A-Z0-9_]*:?-(?P<default>[^}]*)\}"
)
_BEARER = re.compile(r"Authorization:\s*Bearer\s+(?P<token>[^\s\"'\\]+)")
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^\s:/@\"']+:(?P<password>[^\s@/\"']+)@")


def _is_placeholder(value: str) -> bool:
    v = value.strip()
    return (
        not v
        or v.startswith(("$", "<", "{", "%", "*", "("))
        or "..." in v
        or "…" in v
        or v.lower() in {"none", "null", "true", "false", "''", '""', "redacted", "hidden"}
    )


def literal_secrets(text: str) -> list[str]:
    """Every secret value written out literally in `text`, in order of appearance."""
    found: list[tuple[int, str]] = []
    for match in _ASSIGNED.finditer(text):
        value = next(v for v in (match["quoted"], match["bare"], match["lower"]) if v is not None)
        found.append((match.start(), value))
    found += [(m.start(), m["default"]) for m in _COMPOSE_DEFAULT.finditer(text)]
    found += [(m.start(), m["token"]) for m in _BEARER.finditer(text)]
    found += [(m.start(), m["password"]) for m in _URL_PASSWORD.finditer(text)]
    return [value for _, value in sorted(found) if not _is_placeholder(value)]
