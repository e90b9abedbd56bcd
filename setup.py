"""Package layout that pyproject.toml alone cannot express.

`migrations/` and `providers/` live at the top of the repository, where their users look for
them (alembic's, and a provider's author), but install as `brev.migrations` and `brev.providers`:
the wheel carries them and nothing named plain `migrations` or `providers` lands in
site-packages. An editable install maps them the same way through setuptools' import hook;
mypy, which cannot follow that hook, checks a view of the tree that `make typecheck` builds
(scripts/typecheck-view.sh).
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["brev", "brev.*"]),
        "brev.migrations",
        "brev.migrations.versions",
        "brev.providers",
    ],
    package_dir={"brev.migrations": "migrations", "brev.providers": "providers"},
)
