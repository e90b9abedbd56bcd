"""A registered machine ("node"): the wheel the plane ships to it, the shell scripts it runs
there over SSH, and the instances' working directories the agent keeps on it.

`workdirs` runs on the node inside the agent and imports nothing outside the standard library;
`wheel` and `scripts` run on the plane.
"""
