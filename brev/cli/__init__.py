"""The `brev` command line: a thin client of the control plane.

Modules here import only typer at the top; the HTTP client, rich tables and the server are
imported inside the commands that use them, so `brev --help` stays fast.
"""
