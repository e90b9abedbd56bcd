"""What `brev` answers before typer, httpx and pydantic are imported (about 150 ms of a regular
install's start-up, ten times a bare Python's): help from a copy rendered by the real CLI
(`help`). brev.cli.launch calls it first; it returns None for anything it was not written for
(a command line the copy does not hold, a terminal too narrow for it) and the full CLI then
runs the command. Tests compare its output with the full CLI's (BREV_FAST=0) byte for byte.
"""
