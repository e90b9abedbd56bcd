"""Which files of a directory `brev run` sends: what git would call not ignored.

The rules are git's (gitignore(5)): `.gitignore` files in the directory, its subdirectories
and, when it lies inside a git work tree, the directories above it up to the top (plus that
repository's .git/info/exclude); a deeper file's patterns win over a shallower one's and, in
one file, the last matching pattern wins. `.brevignore` files have the same syntax and are
read after `.gitignore` at each level, so they can override it. An excluded directory is not
entered, which both keeps a large node_modules cheap and means, as in git, that nothing inside
it can be re-included. `.git` is never sent. Symlinks are sent as links, never followed; the
per-user core.excludesFile is not read (it describes one person's editor, not the project).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

IGNORE_FILES = (".gitignore", ".brevignore")  # in this order: the later one wins
_NEVER = re.compile(r"(?!)")
# wildmatch's character classes, over ASCII as git's are.
_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9a-fA-F",
}


@dataclass(frozen=True)
class Rule:
    """One pattern line of an ignore file."""

    regex: re.Pattern[str]
    negate: bool  # `!pattern`: re-include
    dir_only: bool  # `pattern/`: directories only (a symlink is not one)
    anchored: bool  # has a slash: matched against the path below `base`, else the last name
    base: str  # the ignore file's directory, "" or "a/b/", relative to the work tree's top


@dataclass(frozen=True)
class Entry:
    path: str  # relative POSIX path below the root
    kind: Literal["dir", "file", "link"]
    size: int  # bytes of a file, 0 for the others


def files_to_send(root: Path) -> list[str]:
    """The files and symlinks below `root` that are not ignored, sorted: what
    `git ls-files -co --exclude-standard` lists, in or out of a repository."""
    return [e.path for e in entries_to_send(root) if e.kind != "dir"]


def entries_to_send(root: Path) -> list[Entry]:
    """files_to_send with the directories too (empty ones included: a program may expect its
    output folder), sorted, so each directory comes before what it holds."""
    prefix, rules = _outer_rules(root)
    found: list[Entry] = []
    _walk(os.fspath(root), "", prefix, rules, found)
    found.sort(key=lambda e: e.path)
    return found


def parse(text: str, base: str) -> list[Rule]:
    """The rules of one ignore file's text; `base` is its directory ("" or "a/b/")."""
    if text.startswith("\ufeff"):  # git skips a UTF-8 byte order mark
        text = text[1:]
    lines = text.split("\n")
    rules = []
    for number, raw in enumerate(lines):
        # git drops the CR of a CRLF, and only where a LF follows
        line = raw[:-1] if raw.endswith("\r") and number < len(lines) - 1 else raw
        if not line or line.startswith("#"):
            continue
        rule = _rule(_trim_trailing_spaces(line), base)
        if rule is not None:
            rules.append(rule)
    return rules


def is_excluded(rules: list[Rule], path: str, is_dir: bool) -> bool:
    """Whether `path` (relative to the top, POSIX) is ignored by `rules`, shallowest first."""
    name = path.rpartition("/")[2]
    for rule in reversed(rules):
        if rule.dir_only and not is_dir:
            continue
        if not path.startswith(rule.base):
            continue
        subject = path[len(rule.base) :] if rule.anchored else name
        if rule.regex.fullmatch(subject):
            return not rule.negate
    return False


def _walk(directory: str, rel: str, prefix: str, rules: list[Rule], found: list[Entry]) -> None:
    """Append what `directory` (at `rel` below the root, "" or "a/b/") holds."""
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError:
        return  # unreadable (a root-owned volume): sent as an empty directory, as git skips it
    rules = _with_ignore_files(directory, prefix + rel, rules, entries)
    for entry in entries:
        if entry.name == ".git":
            continue
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError:
            continue  # gone since the scan
        path = rel + entry.name
        if stat.S_ISDIR(mode):
            if not is_excluded(rules, prefix + path, True):
                found.append(Entry(path, "dir", 0))
                _walk(entry.path, path + "/", prefix, rules, found)
        elif (stat.S_ISREG(mode) or stat.S_ISLNK(mode)) and not is_excluded(
            rules, prefix + path, False
        ):
            size = entry.stat(follow_symlinks=False).st_size if stat.S_ISREG(mode) else 0
            found.append(Entry(path, "file" if stat.S_ISREG(mode) else "link", size))
        # sockets, FIFOs and devices are skipped, as git skips them


def _with_ignore_files(
    directory: str, base: str, rules: list[Rule], entries: list[os.DirEntry[str]]
) -> list[Rule]:
    names = {e.name: e for e in entries}
    added: list[Rule] = []
    for name in IGNORE_FILES:
        entry = names.get(name)
        # a symlinked ignore file is not read: git has refused to follow those since 2.32
        if entry is not None and entry.is_file(follow_symlinks=False):
            added += parse(_read(Path(directory, name)), base)
    return rules + added if added else rules


def _outer_rules(root: Path) -> tuple[str, list[Rule]]:
    """When `root` lies below the top of a git work tree: its path from the top ("a/b/") and
    the rules of the top's .git/info/exclude and of the ignore files above `root`. Whether the
    directories above are themselves excluded is not asked: the person chose to run here."""
    real = root.resolve()
    for top in (real, *real.parents):
        if (top / ".git").exists():
            break
    else:
        return "", []
    rules = parse(_read(top / ".git" / "info" / "exclude"), "")
    parts = real.relative_to(top).parts
    for depth in range(len(parts)):
        base = "".join(part + "/" for part in parts[:depth])
        for name in IGNORE_FILES:
            file = top.joinpath(*parts[:depth], name)
            if file.is_file() and not file.is_symlink():
                rules += parse(_read(file), base)
    return "".join(part + "/" for part in parts), rules


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    # names from os.scandir are decoded the same way, so bytes compare as git compares them
    return data.decode("utf-8", "surrogateescape")


def _trim_trailing_spaces(line: str) -> str:
    """Trailing spaces go unless escaped with a backslash (git's trim_trailing_spaces)."""
    last_space = None
    i = 0
    while i < len(line):
        if line[i] == " ":
            last_space = i if last_space is None else last_space
        else:
            if line[i] == "\\":
                i += 1  # the escaped character, a space included, stays
                if i == len(line):
                    return line
            last_space = None
        i += 1
    return line if last_space is None else line[:last_space]


def _rule(pattern: str, base: str) -> Rule | None:
    negate = pattern.startswith("!")
    if negate:
        pattern = pattern[1:]
    dir_only = pattern.endswith("/")
    if dir_only:
        pattern = pattern[:-1]
    if not pattern:
        return None
    anchored = "/" in pattern
    if pattern.startswith("/"):
        pattern = pattern[1:]
    return Rule(_translate(pattern), negate, dir_only, anchored, base)


def _translate(pattern: str) -> re.Pattern[str]:
    """wildmatch with WM_PATHNAME as a regex: `*`, `?` and `[...]` never match a slash; `**`
    is special only as a whole path component (`**/x`, `x/**`, `x/**/y`), else it is `*`."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            stars = i
            while i < n and pattern[i] == "*":
                i += 1
            whole = (stars == 0 or pattern[stars - 1] == "/") and (i == n or pattern[i] == "/")
            if whole and i - stars >= 2:
                if i == n:
                    out.append(".*")  # `x/**`: everything inside; `**`: everything
                else:
                    out.append("(?:.*/)?")  # `**/`: no or any directories
                    i += 1
            else:
                out.append("[^/]*")
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "[":
            end, klass = _bracket(pattern, i)
            if klass is None:
                return _NEVER  # an unclosed or unknown class aborts the match, as in git
            out.append(klass)
            i = end
        elif char == "\\":
            i += 1
            if i == n:
                return _NEVER  # a trailing backslash matches nothing
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _bracket(pattern: str, start: int) -> tuple[int, str | None]:
    """The regex of the `[...]` at `start` and the index of its `]`; None when invalid."""
    i = start + 1
    negated = i < len(pattern) and pattern[i] in "!^"
    if negated:
        i += 1
    items: list[str] = []
    first = True
    while i < len(pattern) and (first or pattern[i] != "]"):
        first = False
        if pattern.startswith("[:", i):
            close = pattern.find("]", i + 2)
            if close < 0:
                return i, None
            if pattern[close - 1] == ":" and close - 1 > i + 1:
                klass = _CLASSES.get(pattern[i + 2 : close - 1])
                if klass is None:
                    return i, None  # an unknown class name aborts, as in git
                items.append(klass)
                i = close + 1
                continue
            # no `:]` before the next `]`: the `[` is an ordinary member, as in wildmatch
        low, i = _class_char(pattern, i)
        if low is None:
            return i, None
        if pattern.startswith("-", i) and i + 1 < len(pattern) and pattern[i + 1] != "]":
            high, i = _class_char(pattern, i + 1)
            if high is None:
                return i, None
            if low <= high:  # git matches nothing for a reversed range
                items.append(f"{re.escape(low)}-{re.escape(high)}")
        else:
            items.append(re.escape(low))
    if i >= len(pattern):
        return i, None
    if not items:
        return i, "[^/]" if negated else "(?!)"
    return i, f"(?!/)[{'^' if negated else ''}{''.join(items)}]"


def _class_char(pattern: str, i: int) -> tuple[str | None, int]:
    if pattern[i] == "\\":
        i += 1
        if i == len(pattern):
            return None, i
    return pattern[i], i + 1
