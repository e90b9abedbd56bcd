"""`brev run`: rent a GPU for one command (a CI job's test run) and give it back.

brev.cli.commands.run parses the command line, job.py drives one run (create or reuse, wait,
sync, run, copy back, delete), remote.py is what runs on the machine, sync.py and ignore.py
move the files, report.py tells the person or the CI system what happened; brev.cli.exit_codes
names how it ends."""
