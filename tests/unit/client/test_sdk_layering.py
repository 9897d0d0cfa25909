"""The SDK stands on its own: nothing outside `cellplane.cli` imports the CLI, and the CLI
reaches the server only through the SDK's public methods (no `client._json`).

Checked on the source text (the AST), so a function-local import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cellplane
import cellplane.client as sdk

SRC = Path(cellplane.__file__).parent
CLI = SRC / "cli"
#: `python -m cellplane` is the `cellplane` command itself: the one module above the CLI.
ENTRY_POINTS = {SRC / "__main__.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_cli(name: str) -> bool:
    return name == "cellplane.cli" or name.startswith("cellplane.cli.")


def test_nothing_outside_the_cli_imports_it() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(n for n in _imports(path) if _is_cli(n))
        for path in SRC.rglob("*.py")
        if CLI not in path.parents and path not in ENTRY_POINTS
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_sdk_imports_no_server_module() -> None:
    server = ("api", "services", "state", "controller", "scheduler", "agent", "drivers", "cli")
    bad = {
        str(path.relative_to(SRC)): sorted(
            n
            for n in _imports(path)
            if n.split(".")[:2][-1] in server and n.startswith("cellplane.")
        )
        for path in (SRC / "client").rglob("*.py")
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_cli_uses_no_private_attribute_of_the_client() -> None:
    """`x._name` where `x` is a client is out; the CLI's own modules may keep private names."""
    private_methods = {
        name
        for name in dir(sdk.Client)
        if name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
    } | {"_http", "_credentials", "_timeout", "_retries", "_backoff"}  # set in __init__
    found: list[str] = []
    for path in CLI.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private_methods:
                found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert found == []
    assert {"_json", "_send", "_iter", "_page", "_stream"} <= private_methods


def test_the_package_exports_what_it_declares() -> None:
    assert sorted(sdk.__all__) == sorted(set(sdk.__all__))
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None
    for path in (SRC / "client").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "__all__" in text, f"{path.name} declares no __all__"
        assert len(text.splitlines()) <= 600, f"{path.name} is over 600 lines"
