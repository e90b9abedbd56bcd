"""The SKILL.md that `brev skill` prints: how a coding agent finds, creates, uses and gives back
a GPU with brev. The reference half is generated from the command tree itself (each command's
arguments, first line of help and options, as click holds them), and the guide's every
`brev CMD` is checked against that tree, so the file cannot drift from the CLI.

Its layout is the Agent Skills one that Claude Code reads: a folder per skill holding SKILL.md,
whose YAML front matter gives the `name` and the `description` that decides when to load it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brev.cli import exit_codes, panels

NAME = "brev"
DESCRIPTION = (
    "Rent and use GPU machines with the brev CLI: find offers (brev search), create an "
    "instance (brev create), run commands and copy files on it over SSH (brev exec, brev cp, "
    "brev port-forward) or rent one for a single command (brev run), then give it back "
    "(brev stop, brev delete). Use when a task needs a GPU, CUDA, or a remote Linux machine."
)
GUIDE = """\
# brev: GPUs for a coding agent

brev is a CLI for a team's GPU pool (cloud instances and the team's own machines). Every
command below runs without a terminal: pass `--json` to read results (one JSON document on
stdout; progress and hints go to stderr), and nothing waits for an answer: where a person would
be asked, the command fails with one `error:` line naming the flag to pass (`--yes`, `--token`,
`--host-key`). Check `brev whoami --json` first; without a login, set `BREV_API_URL`,
`BREV_TOKEN` and `BREV_ORG`, or run `brev login --url URL --token TOKEN`.

## Find a GPU

- `brev search a100 --json`: offers (provider, instance type, GPUs, memory, region, price per
  hour), cheapest first; `brev search any:8 --max-price 20 --json`, `brev search h100 --spot`.
- `brev ls --json`: the org's instances (reuse a running one instead of creating another);
  `brev nodes ls --json`: the team's own machines and their free GPUs.

## Create one

- `brev create a100 --name NAME --ttl 4h --json`: waits until it runs (at most `--timeout`,
  15m) and prints the instance; free GPUs of the team's nodes come first, else the cheapest
  cloud offer. Always give a `--ttl`: the plane deletes the instance then, even if you forget.
- `brev create a100 --dry-run --json` prints the placements it would try, creating nothing;
  `--detach` returns at once: then poll `brev show NAME --json` until `status` is `running`.

## Use it

- `brev exec NAME -- CMD ARGS...`: runs CMD there (in its working directory, with its GPUs);
  its stdout, stderr and exit code are CMD's, 255 when ssh could not get in.
- `brev cp ./data NAME:data` and `brev cp NAME:results ./results`: copy, recursively.
- `brev port-forward NAME -p 8888:8888`: holds the tunnel until killed; start it in the
  background and stop it when done. `brev jupyter NAME --no-browser` does the same for Jupyter.
- `brev run a100 --out results -- python train.py`: rents a GPU for one command, syncs the
  current directory there, streams the output, copies `--out` back and deletes the instance,
  whatever happens; the exit code is the command's.
- Avoid `brev shell` (interactive): use `brev exec`.

## Give it back

- `brev stop NAME`: compute billing stops, the disk stays; `brev start NAME` later.
- `brev delete NAME --yes`: the instance and everything on it; `--yes` is required without a
  terminal. `brev ttl NAME 1h` sets (or moves) its deadline instead.
"""


@dataclass(frozen=True)
class CommandDoc:
    """One command as the reference lists it."""

    path: str  # `nodes show`
    panel: str
    usage: str  # `NAME [GPU]`
    summary: str
    options: list[str]  # as listed: `--name`, `--timeout=15m`
    flags: frozenset[str]  # every spelling it takes: --spot, --no-spot, -y


def commands_of(root: Any) -> list[CommandDoc]:
    """Every visible command under `root` (a click group, as typer builds it), groups walked,
    in the order of `brev --help`: by panel, then as registered."""
    found = list(_walk(root, [], panels.OTHER))
    return sorted(found, key=lambda doc: _panel_rank(doc.panel))


def _walk(command: Any, path: list[str], panel: str) -> Iterator[CommandDoc]:
    # click's objects (typer carries its own copy of click), read duck-typed
    panel = getattr(command, "rich_help_panel", None) or panel
    children: dict[str, Any] | None = getattr(command, "commands", None)
    if children is None:
        yield CommandDoc(
            path=" ".join(path),
            panel=panel,
            usage=" ".join(_argument(p) for p in command.params if p.param_type_name == "argument"),
            summary=command.get_short_help_str(limit=200),
            options=[_option(p) for p in command.params if _visible_option(p)],
            flags=frozenset(
                flag
                for p in command.params
                if p.param_type_name == "option"
                for flag in (*p.opts, *p.secondary_opts)
            ),
        )
        return
    for name, child in children.items():
        if not child.hidden:
            yield from _walk(child, [*path, name], panel)


def _panel_rank(panel: str) -> int:
    return panels.ORDER.index(panel) if panel in panels.ORDER else len(panels.ORDER)


def _argument(param: Any) -> str:
    shown = str(param.metavar or param.name.upper())
    if param.nargs == -1:
        shown += "..."
    return shown if param.required or shown.startswith("[") else f"[{shown}]"


def _visible_option(param: Any) -> bool:
    return (
        param.param_type_name == "option"
        and not getattr(param, "hidden", False)
        and "--help" not in param.opts
    )


def _option(param: Any) -> str:
    """`--name`; `--timeout=15m` with its default; `--no-trust-ca` for a flag that is on."""
    flag = str(max(param.opts, key=len))
    default = param.default
    if getattr(param, "is_flag", False):
        return str(param.secondary_opts[0]) if default is True and param.secondary_opts else flag
    return flag if default in (None, "", [], ()) else f"{flag}={default}"


def render(root: Any, *, guide: str = GUIDE) -> str:
    """SKILL.md for the tree under `root`. ValueError when the guide names a command that the
    tree does not have."""
    docs = commands_of(root)
    _check_guide(guide, docs)
    lines = [
        "---",
        f"name: {NAME}",
        # JSON's string syntax is YAML's double-quoted scalar: colons and all, as written.
        f"description: {json.dumps(DESCRIPTION)}",
        "---",
        "",
        guide.rstrip(),
        "",
        "## Every command",
        "",
        "Generated from brev's own command tree; `brev COMMAND --help` says what each option "
        "means.",
    ]
    panel = None
    for doc in docs:
        if doc.panel != panel:
            panel = doc.panel
            lines += ["", f"### {panel}", ""]
        head = " ".join(part for part in ("brev", doc.path, doc.usage) if part)
        options = f" Options: {', '.join(f'`{o}`' for o in doc.options)}." if doc.options else ""
        lines.append(f"- `{head}`: {doc.summary}{options}")
    lines += ["", "## Exit codes", ""]
    lines += [f"- {code}: {meaning}" for code, meaning in sorted(exit_codes.MEANINGS.items())]
    return "\n".join(lines) + "\n"


def _check_guide(guide: str, docs: list[CommandDoc]) -> None:
    """Each `brev ...` of the guide names a command of the tree, and only options it takes."""
    by_path = {doc.path: doc for doc in docs}
    for span in re.findall(r"`(brev [^`]*)`", guide):
        words = span.split()[1:]
        if "--" in words:
            words = words[: words.index("--")]  # the remote command's own words
        doc = by_path.get(" ".join(words[:2])) or by_path.get(" ".join(words[:1]))
        if doc is None:
            raise ValueError(f"the guide's `{span}` names no command of brev")
        for word in words:
            flag = word.split("=", 1)[0]
            if flag.startswith("-") and flag not in doc.flags | {"--help"}:
                raise ValueError(f"the guide's `{span}`: brev {doc.path} takes no {flag}")


def install(directory: Path, text: str) -> Path:
    """Write DIR/brev/SKILL.md (DIR: a skills folder, e.g. ~/.claude/skills); its path."""
    target = directory.expanduser() / NAME / "SKILL.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target
