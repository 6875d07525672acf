#!/usr/bin/env bash
# Create .venv and install evoforge with its test tools. Installs the Debian packages evoforge
# uses (python3-venv, bubblewrap, util-linux's setpriv; gcc, valgrind, iverilog and yosys for the
# built-in c_sort and verilog_multiplier problems; postgresql, chromium and chromium-driver for the
# PostgreSQL storage and dashboard tests) when running as root on a Debian-like system,
# waiting for the dpkg lock rather than failing, and creates the unprivileged system user
# `evoforge-sandbox` that candidates run as when evoforge runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=()
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
  command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
  command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
  command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
  command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
  command -v iverilog >/dev/null 2>&1 || need+=(iverilog)
  command -v yosys >/dev/null 2>&1 || need+=(yosys)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${need[*]}"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
      --no-install-recommends "${need[@]}" >/dev/null
  fi
  if ! getent passwd evoforge-sandbox >/dev/null 2>&1; then
    # candidates run as this user (no home, no shell, no groups) when evoforge runs as root
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
      --user-group evoforge-sandbox 2>/dev/null || echo "setup: could not create the user evoforge-sandbox; candidates will run as nobody" >&2
  fi
elif ! command -v bwrap >/dev/null 2>&1; then
  echo "setup: bubblewrap is not installed and this is not a root Debian shell; evoforge still runs" >&2
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
touch .venv/.installed
