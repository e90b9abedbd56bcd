#!/usr/bin/env bash
# The action's first step: make a `brev` CLI available; its path goes to the step output
# `brev` (and its folder onto GITHUB_PATH, so later steps of the job can call `brev` too).
#   BREV_ACTION_INSTALL  auto | action | skip | a pip requirement
#   BREV_ACTION_PATH     the action's own folder (a checkout of this repository)
set -euo pipefail

mode=${BREV_ACTION_INSTALL:-auto}
case "$mode" in
  auto)
    if found=$(command -v brev); then
      echo "brev already on PATH: $found"
      echo "brev=$found" >> "$GITHUB_OUTPUT"
      exit 0
    fi
    spec=$BREV_ACTION_PATH ;;
  skip)
    if ! found=$(command -v brev); then
      echo "::error::install: skip, but there is no brev on PATH"
      exit 1
    fi
    echo "brev=$found" >> "$GITHUB_OUTPUT"
    exit 0 ;;
  action) spec=$BREV_ACTION_PATH ;;
  *) spec=$mode ;;
esac

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "::error::brev needs Python 3.11 or later on the runner (python3 is" \
    "$(python3 -V 2>&1 || echo missing)); add actions/setup-python before this step"
  exit 1
fi
# A venv of its own: the runner's Python may be "externally managed" (PEP 668), and the
# job's own packages stay untouched.
venv=${RUNNER_TEMP:-/tmp}/brev-action-venv
python3 -m venv "$venv"
echo "pip install $spec"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec"
echo "$venv/bin" >> "$GITHUB_PATH"
echo "brev=$venv/bin/brev" >> "$GITHUB_OUTPUT"
