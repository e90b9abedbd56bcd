"""`python -m brev.node.boot`: the agent's install on a cloud instance at first boot.

The instance's user data downloads this brev's wheel from the plane, unpacks it to a
temporary folder and runs this module from there; it installs the agent exactly as
`brev nodes add` and `brev register` do (brev.node.installer), into BREV_NODE_HOME
(/opt/brev-agent), as a systemd unit where systemd runs. Standard library only."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from brev.node import installer
from brev.ssh.local import run_local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m brev.node.boot")
    parser.add_argument("--url", required=True, help="the plane")
    parser.add_argument("--wheel", required=True, type=Path, help="brev's wheel, downloaded")
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args(argv)
    home = Path(os.environ.get("BREV_NODE_HOME", "/opt/brev-agent"))
    try:
        token = (home / "agent.token").read_text().strip()
        wheel = args.wheel.read_bytes()
        facts = installer.probe(run_local, "this instance")
        installer.install(
            run_local,
            "this instance",
            facts,
            token=token,
            plane_url=args.url,
            interval_s=args.interval,
            wheel=lambda: (args.wheel.name, wheel),
        )
    except (installer.InstallError, OSError) as error:
        print(f"brev: agent install failed: {error}", file=sys.stderr)
        return 1
    print(f"brev: the agent runs from {facts.node_home} ({facts.python})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
