#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
# System packages: chromium (browser tests), prometheus (real-Prometheus test), wrk (benchmarks).
# Python packages go into ./.venv. Extra arguments are passed to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "scripts/test.sh: please install ${need_apt[*]} (apt-get) for the browser and Prometheus tests" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# compat mode puts a plain path entry on sys.path, so the repo's example_host/ folder (a project
# folder, not the package) cannot shadow the installed package under `python -m pytest`.
.venv/bin/python -m pip install -q -e ./example_host --config-settings editable_mode=compat
exec .venv/bin/python -m pytest -q -rs "$@"
