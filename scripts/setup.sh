#!/usr/bin/env bash
# Set up dfc_analog on a fresh machine: ngspice (Debian packages ngspice, libngspice0) for the SPICE
# tools, a virtual environment in .venv, and the package with its test dependencies.
# Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

have_ngspice() { command -v ngspice >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q libngspice; }
if ! have_ngspice; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ngspice (apt-get) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ngspice libngspice0 >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "setup: installing ngspice (sudo apt-get) ..."
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ngspice libngspice0 >/dev/null
  else
    echo "setup: ngspice is missing and this user cannot install it; the SPICE tools need it:" \
         "ask an administrator to run 'sudo apt-get install -y ngspice libngspice0'." >&2
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv ..."
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.dfc_analog-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv ..."
  .venv/bin/pip install -q -c constraints.txt -e '.[test,sweep]'
  touch "$stamp"
fi
