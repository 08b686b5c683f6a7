#!/usr/bin/env bash
# Installs what is missing to build, run and test rules_py_distributed on Debian 12, then runs the
# command it is given inside that environment:
#   tools/setup.sh bazel run //train:model     (README: run the example job)
#   tools/setup.sh pytest                      (README: run every test)
# What it installs: Debian's Bazel 4.2.3 (bazel-bootstrap), strace, iproute2 (for the simulated hosts
# of tests/multinode, which need root) and python3-venv, with apt; a virtualenv in .venv with
# requirements_lock.txt and tests/requirements.txt; buildifier from npm. For pytest only, the
# services the tests stand up: PostgreSQL 15 (tests/rbe) and SLURM 22.05 with munge (tests/cluster)
# with apt, BuildGrid (tests/rbe's remote-execution service) in .venv/buildgrid, with Python 3.13
# from pyenv, and for tests/torch_range one virtualenv per extra torch, .venv-torch-<version>, from
# tests/torch_range/requirements-<version>.txt, with that torch from PyPI.
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

# The services that tests/rbe and tests/cluster stand up, for the test command only.
install_test_services() {
  if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    echo "setup: installing PostgreSQL (apt) for tests/rbe" >&2
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  fi

  # tests/cluster starts its own slurmctld, slurmd and munged. Their packages would start the
  # system's as they install: a policy-rc.d that answers 101 (action forbidden) stops that, as in
  # Debian's container images, which ship one.
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
      || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "setup: installing SLURM and munge (apt), their daemons not started" >&2
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      trap 'sudo_if_needed rm -f "$policy"' EXIT
      printf '#!/bin/sh\nexit 101\n' | sudo_if_needed tee "$policy" >/dev/null
      sudo_if_needed chmod 755 "$policy"
    fi
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    if [ "$(trap -p EXIT)" ]; then sudo_if_needed rm -f "$policy"; trap - EXIT; fi
  fi

  # BuildGrid needs Python >= 3.13 (for 3.11 PyPI has nothing newer than 0.4.4); the image's pyenv
  # has 3.13. Reinstalled only when tests/rbe/requirements.txt changed.
  buildgrid="$venv/buildgrid"
  stamp="$buildgrid/.requirements.sha256"
  want="$(sha256sum <"$root/tests/rbe/requirements.txt")"
  if [ ! -x "$buildgrid/bin/bgd" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python313=""
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 \
        "$(command -v python3.13 || true)"; do
      if [ -x "$candidate" ] && "$candidate" -c "import sys; sys.exit(sys.version_info < (3, 13))"
      then python313="$candidate"; break; fi
    done
    if [ -z "$python313" ]; then
      echo "setup: BuildGrid (tests/rbe) needs Python 3.13: install it, e.g. with pyenv" >&2
      exit 2
    fi
    echo "setup: installing BuildGrid into $buildgrid with $python313 (pip)" >&2
    "$python313" -m venv "$buildgrid"
    "$buildgrid/bin/pip" install -q --disable-pip-version-check -r "$root/tests/rbe/requirements.txt"
    echo "$want" >"$stamp"
  fi
}

# tests/torch_range runs the core end-to-end tests on the oldest and the newest supported torch:
# one virtualenv per tests/torch_range/requirements-<version>.txt, in .venv-torch-<version>, each
# reinstalled only when its file changed, and removed when its file is gone. The releases come from
# PyPI whatever this machine's pip configuration says (PIP_CONFIG_FILE=/dev/null): a constraint
# there may cap torch, or an index offer another build.
# PyPI's Linux torch is a CUDA build: each virtualenv is about 5 GB and its download 3 GB more. So
# the installs run one at a time and keep no pip cache, and a machine too short of disk for one says
# so in a line before pip starts, rather than pip failing halfway through a download.
torch_range_need_gb=9
install_torch_range() {
  local file version dir stamp want free_gb
  for dir in "$root"/.venv-torch-*; do
    version="${dir##*/.venv-torch-}"
    if [ -d "$dir" ] && [ ! -e "$root/tests/torch_range/requirements-$version.txt" ]; then
      echo "setup: removing $dir (no tests/torch_range/requirements-$version.txt)" >&2
      rm -rf "$dir"
    fi
  done
  for file in "$root"/tests/torch_range/requirements-*.txt; do
    version="$(basename "$file" .txt)"
    version="${version#requirements-}"
    dir="$root/.venv-torch-$version"
    stamp="$dir/.requirements.sha256"
    want="$(sha256sum <"$file")"
    if [ -x "$dir/bin/python3" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then continue; fi
    rm -rf "$dir"
    free_gb="$(df -P --block-size=1G "$root" | awk 'NR == 2 { print $4 }')"
    if [ "$free_gb" -lt "$torch_range_need_gb" ]; then
      echo "setup: torch $version for tests/torch_range needs ${torch_range_need_gb} GB free on $root; it has ${free_gb} GB: free some, or run on a larger disk" >&2
      exit 1
    fi
    echo "setup: installing torch $version into $dir for tests/torch_range (pip, PyPI; ${free_gb} GB free)" >&2
    python3 -m venv "$dir"
    PIP_CONFIG_FILE=/dev/null "$dir/bin/pip" install -q --disable-pip-version-check --no-cache-dir \
      -r "$file"
    echo "$want" >"$stamp"
  done
}
if [ "${1:-}" = pytest ]; then install_test_services; install_torch_range; fi

# Bazel's Python toolchain runs `python3` from PATH: make it the virtualenv's.
export PATH="$venv/bin:$PATH"
cd "$root"
exec "$@"
