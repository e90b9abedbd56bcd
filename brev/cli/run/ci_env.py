"""Idempotency keys from the CI system's environment: a retried step of the same job asks for
the same key, so the plane hands back the instance of the first try instead of renting a
second GPU."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Mapping, Sequence

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
MAX_KEY = 64  # the plane's limit (api.InstanceCreate.idempotency_key)


def job_identity(env: Mapping[str, str]) -> str | None:
    """The CI job this process runs in, stable across retries of one step; None outside CI."""
    if env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_RUN_ID"):
        # Re-running a workflow is a new attempt: a new rental, as the user asked for.
        attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
        return f"gh-{env['GITHUB_RUN_ID']}-{attempt}-{env.get('GITHUB_JOB', '')}"
    if env.get("GITLAB_CI") == "true" and env.get("CI_JOB_ID"):
        return f"gl-{env['CI_JOB_ID']}"
    if env.get("BUILDKITE") == "true" and env.get("BUILDKITE_JOB_ID"):
        return f"bk-{env['BUILDKITE_JOB_ID']}"
    return None


def idempotency_base(
    env: Mapping[str, str] | None, argv: Sequence[str], workdir: str, explicit: str | None
) -> str:
    """The key's stem. Several `brev run` steps of one job (and a matrix's legs, which share
    GITHUB_JOB) differ in what they run, so the job's identity is joined with a digest of the
    command line and directory. Outside CI: a fresh key, as `brev create` uses."""
    if explicit:
        return explicit
    identity = job_identity(os.environ if env is None else env)
    if identity is None:
        return f"run-{uuid.uuid4().hex}"
    digest = hashlib.sha256("\0".join([*argv, workdir]).encode()).hexdigest()[:12]
    stem = _UNSAFE.sub("_", identity)
    return f"{stem[: MAX_KEY - 17]}-{digest}"


def attempt_key(base: str, attempt: int) -> str:
    """The key of the `attempt`-th rental of one job step: an earlier rental that ended
    (deleted, failed) keeps its key, so the next one needs another."""
    suffix = f".{attempt}" if attempt else ""
    return base[: MAX_KEY - len(suffix)] + suffix


def is_safe(key: str) -> bool:
    return _UNSAFE.search(key) is None
