#!/usr/bin/env bash
# Makes the project's Python virtualenv (.venv, git-ignored) with the AWS emulator the
# airlock-aws tests run against. Idempotent: does nothing when the pinned version is there.
set -euo pipefail

MOTO_VERSION=5.2.1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

if [ -x "$venv/bin/moto_server" ] \
  && [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" = "$MOTO_VERSION" ]; then
  exit 0
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || { echo "venv: $python not found (install python3 and python3-venv)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
echo "venv: installing moto[server]==$MOTO_VERSION into $venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
