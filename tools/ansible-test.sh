#!/usr/bin/env bash
# Run ansible-test on a copy of this checkout laid out as ansible_collections/clinops/upgrade,
# which is where ansible-test insists on running.  Only files git tracks or would track are copied.
#   tools/ansible-test.sh sanity [args...]    tools/ansible-test.sh units [args...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/clinops-ansible-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/clinops/upgrade
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [[ -e $f ]] && printf '%s\0' "$f"
done | rsync -a --from0 --files-from=- ./ "$dest/"
# ansible-test asks git for the file list when it finds a repository; a plain copy makes it walk.
cd "$dest"
export PATH=$ROOT/.venv/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$work
ansible-test "$@" --venv --python 3.11 --color no
