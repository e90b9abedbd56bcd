#!/bin/sh
# mypy over the tree as it installs. `providers/` is the package brev.providers (setup.py's
# package_dir): setuptools' editable import hook resolves that at run time, but mypy cannot
# follow the hook, so it checks build/typecheck, a view of links to the real files, and the
# messages are rewritten to the real paths (so they open in an editor).
set -eu
cd "$(dirname "$0")/.."
root=$PWD
mypy=${MYPY:-$root/.venv/bin/mypy}
view=build/typecheck
rm -rf "$view"
mkdir -p "$view/brev"
for entry in brev/*; do
    case "$entry" in */__pycache__) ;; *) ln -s "$root/$entry" "$view/$entry" ;; esac
done
ln -s "$root/providers" "$view/brev/providers"
for entry in tests bench scripts migrations action pyproject.toml; do
    ln -s "$root/$entry" "$view/$entry"
done
cd "$view"
status=0
"$mypy" --cache-dir "$root/.mypy_cache" "$@" >"$root/build/typecheck.out" 2>&1 || status=$?
sed 's#^brev/providers/#providers/#' "$root/build/typecheck.out"
exit "$status"
