#!/usr/bin/env bash
# Installs the infrastructure-as-code checkers into local virtualenvs under .venv/, from PyPI,
# every package pinned (scripts/iac/*-requirements.txt): aws-sam-cli with cfn-lint in one,
# checkov in another (their dependency pins clash), and cargo-lambda with Zig (the linker it
# cross-links with) in a third, for scripts/build-lambda.sh. Does nothing when the pinned set is
# already there. scripts/check-iac.sh runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

install() {
  local name=$1 requirements=scripts/iac/$1-requirements.txt venv=.venv/$1
  local stamp=$venv/.requirements.sha256
  local want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  echo "iac-tools: installing $name into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$requirements"
  # Every dependency is pinned in the file; a missing one fails here instead of drifting.
  "$venv/bin/pip" check
  echo "$want" >"$stamp"
}

install sam
install checkov
install lambda
