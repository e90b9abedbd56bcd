"""Package layout that pyproject.toml alone cannot express.

`migrations/` and `providers/` live at the top of the repository, where the architecture puts
them, but install as `brev.migrations` and `brev.providers`: the wheel carries them and nothing
named plain `migrations` or `providers` lands in site-packages.
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
