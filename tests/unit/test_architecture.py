"""The rules of docs/architecture.md that import-linter does not express (it runs in `make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "cellplane"
MAX_LINES = 600
# Modules below services/ and identity/ that may speak HTTP types, and why.
HTTP_ALLOWED: dict[str, str] = {}


def _modules() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if "migrations" not in p.parts]


def test_no_module_is_over_600_lines() -> None:
    too_long = {
        str(p.relative_to(SRC)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not too_long


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_services_and_identity_speak_no_http_framework() -> None:
    offenders = {}
    for p in _modules():
        rel = str(p.relative_to(SRC))
        if not rel.startswith(("services/", "identity/")) or rel in HTTP_ALLOWED:
            continue
        http = {m for m in _imports(p) if m.split(".")[0] in ("starlette", "fastapi")}
        if http:
            offenders[rel] = http
    assert not offenders


def test_nothing_outside_the_cli_imports_it() -> None:
    allowed = {"__main__.py"}  # `python -m cellplane` is the CLI itself
    offenders = {
        str(p.relative_to(SRC))
        for p in _modules()
        if not str(p.relative_to(SRC)).startswith("cli/")
        and str(p.relative_to(SRC)) not in allowed
        and any(m == "cellplane.cli" or m.startswith("cellplane.cli.") for m in _imports(p))
    }
    assert not offenders
