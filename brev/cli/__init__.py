"""The `brev` command line: a thin client of the control plane.

brev/cli/commands/ holds the commands, a module each with one `register(app)`; brev/cli/ itself
the logic several of them share (SSH state, tunnels, tables, the login, options, exit codes);
brev/cli/run/ the machinery of `brev run`. Modules import only typer at the top; the HTTP
client, rich tables and the server are imported inside the commands that use them, so
`brev --help` stays fast, and launch.py answers `ls`, `exec` and `run --on` before typer loads.
"""
