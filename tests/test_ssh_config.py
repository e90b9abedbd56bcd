"""The user's SSH files: what `brev refresh` writes into ~/.ssh and $BREV_HOME."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from brev.ssh import config as ssh_config

GOOD = ssh_config.Entry(
    alias="train",
    host="10.0.0.5",
    port=22,
    user="ubuntu",
    host_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOv7",),
    status="running",
    certificate="ssh-ed25519-cert-v01@openssh.com AAAA",
)


def test_only_plain_values_are_written() -> None:
    assert ssh_config.well_formed(GOOD)
    for bad in (
        GOOD._replace(host="10.0.0.5\n    ProxyCommand sh -c id"),
        GOOD._replace(user="ubuntu root"),
        GOOD._replace(alias='train"'),
        GOOD._replace(host_keys=("ssh-ed25519 AAAA\n@cert-authority * ssh-ed25519 BBBB",)),
    ):
        assert not ssh_config.well_formed(bad)


def test_the_include_goes_through_a_symlinked_config_once(tmp_path: Path) -> None:
    p = ssh_config.Paths(tmp_path / "brev")
    dotfiles = tmp_path / "dotfiles" / "ssh_config"
    dotfiles.parent.mkdir()
    dotfiles.write_text("Host old\n    User me\n")
    link = tmp_path / "home" / ".ssh" / "config"
    link.parent.mkdir(parents=True)
    link.symlink_to(dotfiles)
    assert ssh_config.add_include(p, link)
    assert not ssh_config.add_include(p, link)
    assert link.is_symlink()
    text = dotfiles.read_text()
    assert text.count(f"Include {p.config}") == 1 and text.endswith("Host old\n    User me\n")


def test_the_fast_path_needs_a_fresh_certificate_and_a_running_machine(tmp_path: Path) -> None:
    p = ssh_config.Paths(tmp_path)
    now = datetime.now(UTC)
    ssh_config.write(p, now + timedelta(hours=1), [GOOD], include_in_user_config=False)
    assert ssh_config.cached_alias(p, "train", now)
    assert not ssh_config.cached_alias(p, "train", now + timedelta(minutes=56))
    assert not ssh_config.cached_alias(p, "other", now)
    ssh_config.forget_cache(p)
    assert not ssh_config.cached_alias(p, "train", now)
