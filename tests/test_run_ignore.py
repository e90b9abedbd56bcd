"""Which files `brev run` sends, checked against the real git on a table of ignore files: each
case's tree is a fresh repository, and what `git ls-files -co --exclude-standard` lists is
what brev.cli.run.ignore must list."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from brev.cli.run import ignore
from brev.cli.run.ignore import entries_to_send, files_to_send

# One tree for every case: names that the patterns below are about.
FILES = [
    "a.txt",
    "b.log",
    "c.LOG",
    "debug.log",
    "important.log",
    "with space.txt",
    "trail ",
    "héllo.txt",
    "日本.txt",
    "new\nline.txt",
    "#hash",
    "!bang",
    "q1.py",
    "q22.py",
    "x.pyc",
    "[ab].txt",
    "star*name",
    "back\\slash",
    ".env",
    ".hidden/secret",
    "build/out.o",
    "build/keep.txt",
    "build/sub/deep.o",
    "src/a.txt",
    "src/main.py",
    "src/b.log",
    "src/build/x.o",
    "src/deep/a.txt",
    "src/deep/b.log",
    "src/deep/er/c.log",
    "docs/build",  # a file named like the directory
    "docs/guide.md",
    "foo/bar/baz.txt",
    "foo/baz.txt",
    "x/foo/bar/baz.txt",
    "m/b/c.txt",
    "m/x/y/b/z.txt",
    "m/x/c.txt",
    "node_modules/pkg/index.js",
    "node_modules/pkg/lib/util.js",
    "logs/2024/jan.log",
    "logs/keep",
    "logs/.gitkeep",
    "Dir.Upper/File.TXT",
]
SYMLINKS = {"cache": "build", "link.log": "b.log", "dangling": "nowhere", "srclink": "src"}
BAD_NAME = b"bad\xff.txt"  # not UTF-8: git compares bytes, so must we

CASES: dict[str, dict[str, str]] = {
    "nothing": {},
    "extension": {".gitignore": "*.log\n"},
    "negation": {".gitignore": "*.log\n!important.log\n"},
    "dir-only-any-depth": {".gitignore": "build/\n"},
    "name-any-depth": {".gitignore": "build\n"},
    "anchored-root": {".gitignore": "/build\n"},
    "anchored-middle-slash": {".gitignore": "src/build\n"},
    "no-reinclude-in-excluded-dir": {".gitignore": "build/\n!build/keep.txt\n"},
    "reinclude-after-star": {".gitignore": "build/*\n!build/keep.txt\n"},
    "leading-doublestar": {".gitignore": "**/foo/bar\n"},
    "leading-doublestar-name": {".gitignore": "**/deep\n"},
    "trailing-doublestar": {".gitignore": "foo/**\n"},
    "middle-doublestar": {".gitignore": "m/**/b\n"},
    "middle-doublestar-file": {".gitignore": "m/**/c.txt\n"},
    "doublestar-dir-only": {".gitignore": "m/**/\n"},
    "doublestar-not-a-component": {".gitignore": "src/**.py\nfo**\n"},
    "doublestar-everything-but": {".gitignore": "**\n!**/\n!*.py\n"},
    "question-mark": {".gitignore": "q?.py\n"},
    "bracket-range": {".gitignore": "q[0-9].py\n*.py[co]\n"},
    "bracket-negated": {".gitignore": "[!q]*.py\n[^a-z]*\n"},
    "bracket-class": {".gitignore": "[[:upper:]]*\n[[:digit:]][[:digit:]]*\n"},
    "bracket-literal": {".gitignore": "[ab].txt\n"},
    "bracket-escaped": {".gitignore": "\\[ab\\].txt\n"},
    "bracket-close-first": {".gitignore": "[]a]*.txt\n"},
    "bracket-unclosed": {".gitignore": "a[\n*.log\n"},
    "bracket-unknown-class": {".gitignore": "[[:nope:]]*\n*.md\n"},
    "escaped-hash-and-bang": {".gitignore": "\\#hash\n\\!bang\n"},
    "comment-and-negation": {".gitignore": "#hash\n!bang\n*.log\n"},
    "escaped-star": {".gitignore": "star\\*name\n"},
    "backslash-file": {".gitignore": "back\\\\slash\n"},
    "trailing-backslash": {".gitignore": "a.txt\\\n"},
    "trailing-space-trimmed": {".gitignore": "trail  \nimportant.log \t\n"},
    "trailing-space-escaped": {".gitignore": "trail\\ \n"},
    "space-in-name": {".gitignore": "with space.txt\n"},
    "case-sensitive": {".gitignore": "*.LOG\n"},
    "non-ascii": {".gitignore": "héllo.txt\n*.txt\n!日本.txt\n"},
    "non-utf8-name": {".gitignore": "bad\udcff.txt\n"},
    "newline-name": {".gitignore": "new?line.txt\n"},
    "node-modules": {".gitignore": "node_modules/\n"},
    "logs-contents": {".gitignore": "logs/**\n!logs/keep\n"},
    "keep-gitkeep": {".gitignore": "logs/*\n!.gitkeep\n"},
    "whitelist": {".gitignore": "*\n!*/\n!*.py\n"},
    "only-src": {".gitignore": "/*\n!/src\n"},
    "dotfiles": {".gitignore": ".*\n!.gitignore\n"},
    "dir-then-reinclude-subdir": {".gitignore": "foo/\n!foo/bar/\n"},
    "prefix-dir-only": {".gitignore": "d*/\n"},
    "symlink-not-a-dir": {".gitignore": "cache/\nsrclink/\n"},
    "symlink-by-name": {".gitignore": "cache\n*.log\n"},
    "crlf": {".gitignore": "*.log\r\nbuild/\r\nfoo"},
    "bom": {".gitignore": "\ufeff*.log\n"},
    "blank-and-spaces": {".gitignore": "\n   \n\t\n*.md\n"},
    "lone-slash-and-bang": {".gitignore": "/\n!\n!/\n"},
    "git-never": {".gitignore": "!.git\n!.git/\n"},
    "nested-deeper-wins": {".gitignore": "*.log\n", "src/.gitignore": "!b.log\ndeep/er/\n"},
    "nested-anchored": {"src/.gitignore": "/a.txt\n"},
    "nested-anchored-slash": {"src/.gitignore": "deep/a.txt\n"},
    "nested-everything": {"src/deep/.gitignore": "*\n"},
    "nested-negation-of-root-dir": {".gitignore": "deep/\n", "src/.gitignore": "!deep/\n"},
    "nested-shallower-negation-loses": {".gitignore": "!b.log\n", "src/.gitignore": "*.log\n"},
    "nested-in-ignored-dir-unread": {".gitignore": "build/\n", "build/.gitignore": "!*\n"},
    "nested-three-levels": {
        ".gitignore": "*.txt\n",
        "src/.gitignore": "!*.txt\n",
        "src/deep/.gitignore": "a.txt\n",
    },
}


def _git(root: Path, *args: str) -> bytes:
    """git with no configuration but the repository's own (no core.excludesFile)."""
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "XDG_CONFIG_HOME": str(root / ".xdg"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    done = subprocess.run(
        ["git", *args], cwd=root, env=environment, capture_output=True, check=True
    )
    return done.stdout


def _git_lists(root: Path, cwd: Path | None = None) -> list[str]:
    out = _git(cwd or root, "ls-files", "-z", "-co", "--exclude-standard")
    return sorted(os.fsdecode(name) for name in out.split(b"\0") if name)


def _make_tree(root: Path, ignore_files: dict[str, str]) -> None:
    for name in FILES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name}\n")
    (root / os.fsdecode(BAD_NAME)).write_text("bad\n")
    for name, target in SYMLINKS.items():
        (root / name).symlink_to(target)
    os.mkfifo(root / "pipe")  # neither git nor brev sends a FIFO
    for name, text in ignore_files.items():
        (root / name).write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    return root


@pytest.mark.parametrize("case", list(CASES))
def test_gitignore_semantics_match_git(repo: Path, case: str) -> None:
    _make_tree(repo, CASES[case])
    expected = _git_lists(repo)
    sent = files_to_send(repo)
    assert sent == sorted(sent)
    assert sent == expected
    assert not any(p == ".git" or p.startswith(".git/") for p in sent)


BREV_CASES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    # (.gitignore files, .brevignore files) by path
    "brevignore-alone": ({}, {".brevignore": "*.log\nnode_modules/\n"}),
    "brevignore-overrides-gitignore": (
        {".gitignore": "*.log\nbuild/\n"},
        {".brevignore": "!debug.log\n!build/\n"},
    ),
    "brevignore-adds": ({".gitignore": "*.log\n"}, {".brevignore": "docs/\n.env\n"}),
    "gitignore-deeper-beats-brevignore": (
        {"src/.gitignore": "!b.log\n"},
        {".brevignore": "*.log\n"},
    ),
    "brevignore-nested": (
        {".gitignore": "*.log\n"},
        {"src/.brevignore": "!b.log\n/a.txt\n", "src/deep/.brevignore": "!*.log\n"},
    ),
    "brevignore-cannot-reenter": ({".gitignore": "build/\n"}, {"build/.brevignore": "!*\n"}),
}


@pytest.mark.parametrize("case", list(BREV_CASES))
def test_brevignore_reads_as_if_appended_to_gitignore(tmp_path: Path, case: str) -> None:
    """A .brevignore is read after the .gitignore of its directory: the same tree with its
    patterns appended to that .gitignore is what git must list."""
    gitignores, brevignores = BREV_CASES[case]
    combined = dict(gitignores)
    for name, text in brevignores.items():
        gitignore = str(Path(name).with_name(".gitignore"))
        combined[gitignore] = combined.get(gitignore, "") + "\n" + text
    # both trees hold the same names: a .gitignore wherever the merged one needs one
    ours = tmp_path / "ours"
    ours.mkdir()
    _make_tree(ours, {**{name: "" for name in combined}, **gitignores, **brevignores})
    merged = tmp_path / "merged"
    merged.mkdir()
    _make_tree(merged, {**combined, **{name: "" for name in brevignores}})
    _git(merged, "init", "-q")
    assert files_to_send(ours) == _git_lists(merged)


def test_info_exclude_and_ignore_files_above_a_subdirectory(repo: Path) -> None:
    """Run from a subdirectory of a work tree: the ignore files above it and the repository's
    .git/info/exclude apply, with anchored patterns anchored where they were written."""
    _make_tree(repo, {".gitignore": "*.log\n/src/deep/er/\n", ".brevignore": "main.py\n"})
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("*.o\n!important.log\n")
    subdir = repo / "src"
    (subdir / ".gitignore").write_text("!b.log\n")
    sent = files_to_send(subdir)
    assert "deep/a.txt" in sent and "b.log" in sent and "build/x.o" not in sent
    # src's !b.log (any depth) beats the top's *.log; deep/er stays out, anchored at the top
    assert "deep/b.log" in sent and not any(p.startswith("deep/er") for p in sent)
    (repo / ".brevignore").unlink()
    assert sent == [p for p in _git_lists(repo, cwd=subdir) if p != "main.py"]
    # the root itself: info/exclude wins least, so the .gitignore's *.log still holds
    assert "important.log" not in files_to_send(repo)
    assert files_to_send(repo) == _git_lists(repo)


def test_outside_a_repository(tmp_path: Path) -> None:
    _make_tree(tmp_path, {".gitignore": "*.log\n", ".brevignore": "src/\n"})
    sent = files_to_send(tmp_path)
    assert "a.txt" in sent and ".gitignore" in sent and ".brevignore" in sent
    assert not any(p.endswith(".log") or p.startswith("src/") for p in sent)


def test_entries_carry_directories_kinds_and_sizes(tmp_path: Path) -> None:
    _make_tree(tmp_path, {".gitignore": "logs/*\nnode_modules/\n"})
    (tmp_path / "empty" / "inner").mkdir(parents=True)
    (tmp_path / ".git").mkdir()  # a repository's own folder, never sent
    (tmp_path / ".git" / "config").write_text("")
    entries = {e.path: e for e in entries_to_send(tmp_path)}
    assert [e.path for e in entries_to_send(tmp_path)] == sorted(entries)
    assert entries["empty"].kind == "dir" and entries["empty/inner"].kind == "dir"
    assert entries["logs"].kind == "dir"  # its contents are ignored, not the folder
    assert "node_modules" not in entries and ".git" not in entries
    assert entries["srclink"].kind == "link" and entries["dangling"].kind == "link"
    assert "srclink/a.txt" not in entries  # a symlinked directory is not followed
    assert entries["a.txt"] == ignore.Entry("a.txt", "file", len("a.txt\n"))
    assert "pipe" not in entries
    files = {p for p, e in entries.items() if e.kind != "dir"}
    assert sorted(files) == files_to_send(tmp_path)


def test_an_excluded_directory_is_not_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _make_tree(tmp_path, {".gitignore": "node_modules/\n"})
    for i in range(50):
        (tmp_path / "node_modules" / f"pkg{i}").mkdir(parents=True)
    scanned: list[str] = []
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        scanned.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    files_to_send(tmp_path)
    assert scanned and not any("node_modules" in path for path in scanned)


def test_unreadable_directory_and_symlinked_ignore_file(tmp_path: Path) -> None:
    (tmp_path / "rules").write_text("*.txt\n")
    (tmp_path / ".gitignore").symlink_to("rules")  # git does not follow it; nor do we
    (tmp_path / "a.txt").write_text("a")
    sent = files_to_send(tmp_path)
    assert sent == [".gitignore", "a.txt", "rules"]
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        locked.mkdir()
        (locked / "x").write_text("x")
        locked.chmod(0)
        try:
            assert "locked" in [e.path for e in entries_to_send(tmp_path)]
        finally:
            locked.chmod(0o755)
