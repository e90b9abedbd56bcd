"""SSH for the plane and the CLI: the plane's user certificate authority (`ca`), commands on a
box over SSH with a pinned host key (`remote`), and their local twin (`local`).

Importing this package costs nothing: paramiko and cryptography load inside the functions
that need them, so the CLI starts fast."""
