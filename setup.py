"""Package layout that pyproject.toml alone cannot express.

`migrations/` lives at the top of the repository, where alembic users look for it, but installs
as `brev.migrations`: the wheel carries it and nothing named plain `migrations` lands in
site-packages. (`providers/` gets the same result through the symlink `brev/providers`, which
also lets mypy follow `brev.providers` imports.)
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["brev", "brev.*"]),
        "brev.migrations",
        "brev.migrations.versions",
    ],
    package_dir={"brev.migrations": "migrations"},
)
