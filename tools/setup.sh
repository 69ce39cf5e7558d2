#!/usr/bin/env bash
# One-time set-up for `make test`, `make demo` and friends on Debian 12 with Python 3.11.
# Idempotent: a second run only checks.  Installs
#   - the Debian packages the integration tests start for real (apt-get when root; otherwise
#     prints the exact apt-get line and stops),
#   - .venv from the pinned requirements.txt,
#   - the offline pip bootstrap for ansible-test (~/.ansible/test/cache/get_pip_<version>.py),
#   - build/collections/ansible_collections/clinops/upgrade -> this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3.11}

APT_PACKAGES=(
  postgresql-15 postgresql-client-15
  mariadb-server mariadb-client
  firebird3.0-server firebird3.0-utils libfbclient2
  sqlite3 orthanc dcmtk
  openssh-server iproute2 rsync zstd util-linux procps shellcheck
  chromium chromium-driver
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
  else
    echo "setup: these Debian packages are missing; run as root:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "setup: building .venv from requirements.txt"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

# ansible-test wants to download get-pip.py; give it the offline stand-in under the exact name.
pip_version=$(.venv/bin/python - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')).read()
print(re.search(r"default_packages = dict\(\s*pip='([^']+)'", src).group(1))
PY
)
cache=~/.ansible/test/cache
mkdir -p "$cache"
cp tools/get_pip_offline.py "$cache/get_pip_${pip_version//./_}.py"

mkdir -p build/collections/ansible_collections/clinops
ln -sfn "$ROOT" build/collections/ansible_collections/clinops/upgrade
echo "setup: ready"
