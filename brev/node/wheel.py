"""A wheel of the running `brev` package, built in memory, for the plane to copy onto a node.

The node unzips it into a bare venv and runs `python -m brev.agent` from it: the agent needs
the standard library only, so the wheel declares no dependencies (a node may have no internet)
and the same bytes work on any architecture and Python >= 3.11.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import brev

# Fixed timestamps: the same package gives the same bytes (and hash) on every build.
_EPOCH = (1980, 1, 1, 0, 0, 0)


@functools.cache
def build_wheel() -> tuple[str, bytes]:
    """(`brev-<version>-py3-none-any.whl`, its bytes). Built once per process."""
    version = brev.__version__
    dist_info = f"brev-{version}.dist-info"
    files = [(f"brev/{name}", path.read_bytes()) for name, path in _package_files()]
    files += [
        (f"{dist_info}/METADATA", _metadata(version)),
        (f"{dist_info}/WHEEL", _wheel_info()),
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files:
            _add(wheel, name, data)
        _add(wheel, f"{dist_info}/RECORD", _record(files, f"{dist_info}/RECORD"))
    return f"brev-{version}-py3-none-any.whl", buffer.getvalue()


def _package_files() -> Iterator[tuple[str, Path]]:
    """Every file of the package as (path relative to it, path), sorted, compiled files left
    out. In a source tree brev.providers lives beside the package, in `providers/` (setup.py's
    package_dir), and lands in the wheel where an install puts it. Found by path, not imported:
    a node may run this from a source tree without the editable install's import hook."""
    root = Path(brev.__file__).parent
    yield from _files_below(root, prefix="")
    beside = root.parent / "providers"
    if not (root / "providers").is_dir() and (beside / "__init__.py").is_file():
        yield from _files_below(beside, prefix="providers/")


def _files_below(top: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for directory, subdirectories, names in os.walk(top):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(names):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(directory) / name
            yield prefix + path.relative_to(top).as_posix(), path


def _metadata(version: str) -> bytes:
    # No Requires-Dist on purpose: the agent needs none, and a node may not reach an index.
    return (
        f"Metadata-Version: 2.1\nName: brev\nVersion: {version}\n"
        "Summary: brev's GPU agent, as shipped to registered nodes\n"
        "Requires-Python: >=3.11\n"
    ).encode()


def _wheel_info() -> bytes:
    return (
        b"Wheel-Version: 1.0\nGenerator: brev.node.wheel\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )


def _record(files: list[tuple[str, bytes]], record_name: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for name, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([name, f"sha256={digest}", len(data)])
    writer.writerow([record_name, "", ""])
    return out.getvalue().encode()


def _add(wheel: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16  # rw-r--r--: zip tools default to no permissions at all
    wheel.writestr(info, data)
