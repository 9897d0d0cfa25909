"""One verb convention for every noun: `ls`, `show`, `rm`, with `list` and `delete` as hidden
aliases (either spelling works; help shows the short one), as docker, kubectl and gh accept.

`conventional(app)` rewrites a noun's Typer app after its commands are registered: a command
named `list` becomes `ls` (and `delete` becomes `rm`), and the other spelling is registered on the
same function, hidden. `tests/unit/cli/test_cli_conventions.py` walks the whole app to hold it.
"""

from __future__ import annotations

import copy

import typer
from typer.models import CommandInfo

__all__ = ["ALIASES", "conventional"]


def _renamed(info: CommandInfo, name: str, *, hidden: bool = False) -> CommandInfo:
    new = copy.copy(info)
    new.name = name
    new.hidden = hidden or info.hidden
    return new


# canonical verb -> its hidden alias
ALIASES = {"ls": "list", "rm": "delete"}
_CANONICAL = {alias: verb for verb, alias in ALIASES.items()}


def conventional(app: typer.Typer) -> typer.Typer:
    names = {c.name for c in app.registered_commands}
    renamed = [
        _renamed(c, _CANONICAL[c.name])  # `list` -> `ls`, `delete` -> `rm`
        if c.name in _CANONICAL and _CANONICAL[c.name] not in names
        else c
        for c in app.registered_commands
    ]
    taken = {c.name for c in renamed}
    out: list[CommandInfo] = []
    for info in renamed:
        out.append(info)
        alias = ALIASES.get(info.name or "")
        if alias and alias not in taken:
            out.append(_renamed(info, alias, hidden=True))
    app.registered_commands = out
    return app
