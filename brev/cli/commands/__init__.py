"""The commands of `brev`, a module each (or a group: `nodes`, `org`, `token`, `provider`,
`catalog`, `agent`), each with one `register(app)` that brev.cli.main calls in the order of
`brev --help`. What several commands share lives beside this package, in brev.cli: the SSH state
(ssh_access), tunnels (ssh_tunnels), tables and JSON (output, listing, gpus), the login
(login_state), the repeated options (options) and the exit codes (exit_codes)."""
