#!/usr/bin/env bash
# Installs what is missing to build, run and test rules_py_distributed on Debian 12, then runs the
# command it is given inside that environment:
#   tools/setup.sh bazel run //train:model     (README: run the example job)
#   tools/setup.sh pytest                      (README: run every test)
# What it installs: Debian's Bazel 4.2.3 (bazel-bootstrap), strace, iproute2 (for the simulated hosts
# of tests/multinode, which need root) and python3-venv, with apt; a
# virtualenv in .venv with requirements_lock.txt and tests/requirements.txt; buildifier from npm.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v bazel >/dev/null || ! command -v strace >/dev/null || ! command -v ip >/dev/null \
    || [ ! -d /usr/share/bazel/rules/java ]; then
  echo "setup: installing Bazel 4.2.3, strace, iproute2, python3-venv (apt)" >&2
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    bazel-bootstrap bazel-rules-java python3-venv strace iproute2 >/dev/null
fi

# Reinstall the Python packages only when a requirements file changed.
stamp="$venv/.requirements.sha256"
want="$(cat "$root/requirements_lock.txt" "$root/tests/requirements.txt" | sha256sum)"
if [ ! -x "$venv/bin/python3" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into $venv (pip)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/requirements.txt"
  echo "$want" >"$stamp"
fi

if [ ! -x "$venv/bin/buildifier" ]; then
  echo "setup: installing buildifier (npm)" >&2
  npm install --silent --no-audit --no-fund --prefix "$venv/npm" @bazel/buildifier@8.2.1
  ln -sf "$venv/npm/node_modules/.bin/buildifier" "$venv/bin/buildifier"
fi

# Bazel's Python toolchain runs `python3` from PATH: make it the virtualenv's.
export PATH="$venv/bin:$PATH"
cd "$root"
exec "$@"
