"""What `brev` answers before typer, httpx and pydantic are imported (about 150 ms of a regular
install's start-up, ten times a bare Python's): help from a copy rendered by the real CLI
(`help`), and `search` and `show` that ask the plane on the standard library (`search`, `show`,
through `plane`). brev.cli.launch calls them first; each returns None (or False) for anything it
was not written for (an error, an unusual flag, a terminal too narrow for the rendered help) and
the full CLI then runs the command. Tests compare their output with the full CLI's (BREV_FAST=0)
byte for byte.
"""
