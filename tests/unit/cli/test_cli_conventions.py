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


# `quota show` shows a scope (--tenant / --project, default: yours), not a named object;
# `endpoint rm` closes the one endpoint of --project.
SCOPED = {("quota", "show"), ("endpoint", "rm")}


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


def _options(cmd: object) -> set[str]:
    return {o for p in getattr(cmd, "params", []) for o in getattr(p, "opts", [])}


# Creates whose answer is not one new object with an id.
NOT_AN_OBJECT: set[tuple[str, str]] = set()


@pytest.mark.parametrize("noun", sorted(NOUNS))
def test_every_list_and_show_prints_for_scripts(noun: str) -> None:
    """`ls` and `show` take `-o table|wide|json|yaml`; `ls` and every create take `-q` (ids)."""
    group = NOUNS[noun]
    for verb, cmd in group.commands.items():
        if cmd.hidden:
            continue
        opts = _options(cmd)
        if verb in ("ls", "show"):
            assert {"-o", "--output"} <= opts, f"`{noun} {verb}` has no -o"
            (param,) = [p for p in cmd.params if "-o" in getattr(p, "opts", [])]
            kind = param.type_descriptor.annotation  # type: ignore[attr-defined]
            choices = {str(v.value) for v in kind}
            assert {"table", "wide", "json", "yaml"} <= choices, (noun, verb, choices)
        if verb == "ls" or (
            verb in ("create", "run", "import") and (noun, verb) not in NOT_AN_OBJECT
        ):
            assert {"-q", "--quiet"} <= opts, f"`{noun} {verb}` has no -q"


def _paths(group: TyperGroup, prefix: list[str]) -> list[list[str]]:
    out = []
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        out.append([*prefix, name])
        if isinstance(cmd, TyperGroup):
            out.extend(_paths(cmd, [*prefix, name]))
    return out


COMMANDS = _paths(ROOT, [])


def test_every_command_is_walked() -> None:
    assert ["service", "create"] in COMMANDS and ["cell", "run"] in COMMANDS


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_commands_help_renders(argv: list[str]) -> None:
    """Rich renders option help as markup: an unescaped `[...]` in it (`[/udp]`) made
    `--help` a traceback."""
    r = CliRunner().invoke(app, [*argv, "--help"])
    assert r.exit_code == 0, (argv, r.output, r.exception)
