"""One verb convention over the whole `cellplane` app: every noun lists with `ls`, removes with
`rm` (each with its hidden alias `list` / `delete`, so either spelling works), and `show` / `rm`
take the object's name or id as a positional argument, never only as an option."""

from __future__ import annotations

import pytest
import typer.main
from typer.core import TyperArgument, TyperGroup
from typer.testing import CliRunner

from cellplane.cli.main import app
from cellplane.cli.verbs import ALIASES

ROOT = typer.main.get_command(app)
assert isinstance(ROOT, TyperGroup)
NOUNS = {name: cmd for name, cmd in ROOT.commands.items() if isinstance(cmd, TyperGroup)}


# `quota show` shows a scope (--tenant / --project, default: yours), not a named object.
SCOPED = {("quota", "show")}


def test_every_noun_group_is_walked() -> None:
    assert {"cell", "cluster", "volume", "tenant", "user", "group", "client"} <= set(NOUNS)


@pytest.mark.parametrize("noun", sorted(NOUNS))
def test_noun_follows_the_verb_convention(noun: str) -> None:
    group = NOUNS[noun]
    visible = {n for n, c in group.commands.items() if not c.hidden}
    assert not visible & set(ALIASES.values()), f"{noun}: help shows an alias, not ls/rm"
    for verb, alias in ALIASES.items():
        if verb in group.commands:
            assert alias in group.commands, f"`{noun} {alias}` does not work"
            assert group.commands[alias].hidden
            a, v = group.commands[alias].callback, group.commands[verb].callback
            assert (a.__module__, a.__qualname__) == (v.__module__, v.__qualname__)  # type: ignore[union-attr]
    for verb in ("show", "rm"):
        cmd = group.commands.get(verb)
        if cmd is None or (noun, verb) in SCOPED:
            continue
        positional = [p for p in cmd.params if isinstance(p, TyperArgument)]
        assert positional, f"`{noun} {verb}` takes no positional name"


def test_old_spellings_keep_working() -> None:
    runner = CliRunner()
    for argv in (
        ["cluster", "list", "--help"],
        ["cluster", "delete", "--help"],
        ["tenant", "delete", "--help"],
        ["cell", "list", "--help"],
        ["cell", "delete", "--help"],
    ):
        r = runner.invoke(app, argv)
        assert r.exit_code == 0, (argv, r.output)


def test_cluster_names_are_positional_and_the_old_option_still_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cellplane.cli import clusters

    seen: list[str] = []
    monkeypatch.setattr(clusters, "_simple", lambda action, name, *a, **k: seen.append(name))
    runner = CliRunner()
    assert runner.invoke(app, ["cluster", "stop", "zk"]).exit_code == 0
    assert runner.invoke(app, ["cluster", "stop", "--name", "zk"]).exit_code == 0
    assert runner.invoke(app, ["cluster", "rm", "zk"]).exit_code == 0
    assert seen == ["zk", "zk", "zk"]
    r = runner.invoke(app, ["cluster", "stop"])
    assert r.exit_code != 0 and "name" in r.output
