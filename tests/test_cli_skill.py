"""`brev skill`: the SKILL.md for coding agents, generated from the command tree (so a command
added or removed changes it), its guide checked against that tree, written where agent tools
look for skills."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import pytest
import typer

from brev.cli import agent_skill, exit_codes
from brev.cli.main import app
from tests.cli_runner import brev, ok, one_line_error
from tests.test_cli import plain_env
from tests.test_cli_json import leaf_commands


def small_app(*extra: str) -> typer.Typer:
    """A tree of two commands, a group with one, and `extra` commands."""
    tiny = typer.Typer()
    group = typer.Typer(help="things")

    def command(name: str) -> None:
        def body(
            target: Annotated[str, typer.Argument()],
            wait: Annotated[str, typer.Option(help="how long")] = "5m",
            json_output: Annotated[bool, typer.Option("--json")] = False,
        ) -> None:
            """Do it to TARGET."""

        tiny.command(name, rich_help_panel="Instances")(body)

    for name in ("alpha", "beta", *extra):
        command(name)

    @group.command("inner")
    def inner() -> None:
        """The inner one."""

    tiny.add_typer(group, name="things", rich_help_panel="Access")
    return tiny


def rendered(tiny: typer.Typer, guide: str = "") -> str:
    return agent_skill.render(typer.main.get_command(tiny), guide=guide)


def test_the_reference_is_the_command_tree() -> None:
    text = rendered(small_app())
    assert "- `brev alpha TARGET`: Do it to TARGET. Options: `--wait=5m`, `--json`." in text
    assert "- `brev things inner`: The inner one." in text
    assert text.index("### Instances") < text.index("`brev beta") < text.index("### Access")
    # a command added appears, one removed goes
    assert "`brev gamma TARGET`" in rendered(small_app("gamma"))
    assert "`brev gamma" not in text
    assert rendered(small_app("gamma")) != text


def test_the_guide_may_name_only_commands_and_options_that_exist() -> None:
    tiny = small_app()
    assert "`brev alpha x --wait 1m --json`" in rendered(tiny, "`brev alpha x --wait 1m --json`")
    assert rendered(tiny, "`brev things inner`")
    with pytest.raises(ValueError, match="names no command"):
        rendered(tiny, "Then `brev create a100`.")
    with pytest.raises(ValueError, match="takes no --yes"):
        rendered(tiny, "`brev alpha x --yes`")
    # the words after `--` are the remote command's
    assert rendered(tiny, "`brev alpha x -- ls --all`")
    # the real guide against a tree without its commands
    with pytest.raises(ValueError):
        rendered(tiny, agent_skill.GUIDE)


def test_the_real_skill_lists_every_visible_command() -> None:
    text = agent_skill.render(typer.main.get_command(app))
    front, body = re.fullmatch(r"---\n(.*?)\n---\n(.*)", text, re.S).groups()  # type: ignore[union-attr]
    fields = dict(line.split(": ", 1) for line in front.splitlines())
    assert fields["name"] == "brev"
    description = json.loads(fields["description"])  # a double-quoted YAML scalar
    assert "brev create" in description and len(description) < 1024
    for path, _ in leaf_commands():
        assert f"- `brev {path}" in body, path
    for code in exit_codes.MEANINGS:
        assert f"- {code}: " in body


@pytest.mark.slow
def test_brev_skill_prints_it_and_installs_it(tmp_path: Path) -> None:
    env = plain_env(BREV_HOME=str(tmp_path / "home"))
    printed = ok(brev("skill", env=env))
    assert printed.stdout == agent_skill.render(typer.main.get_command(app))

    skills = tmp_path / "skills"
    installed = ok(brev("skill", "--install", str(skills), env=env))
    target = skills / "brev" / "SKILL.md"
    assert installed.stdout == "" and str(target) in installed.stderr
    assert target.read_text() == printed.stdout

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert "--install: cannot write" in one_line_error(
        brev("skill", "--install", str(blocked), env=env)
    )
