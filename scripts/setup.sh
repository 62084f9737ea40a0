#!/usr/bin/env bash
# Installs what airlock's scripts need on a Debian machine, only what is missing:
# clamd and clamdscan (clamav-daemon) and Debian's ClamAV test files (clamav-testfiles), plus
# any Debian packages named as arguments (scripts/test.sh asks for chromium, which the upload
# page's end-to-end test drives). Then the Python virtualenv with the AWS emulator
# (scripts/venv.sh) and the infrastructure-as-code checkers (scripts/iac-tools.sh).
set -euo pipefail

need=()
[ -x /usr/sbin/clamd ] || need+=(clamav-daemon)
command -v clamdscan >/dev/null 2>&1 || need+=(clamdscan)
[ -d /usr/share/clamav-testfiles ] || need+=(clamav-testfiles)
for extra in "$@"; do
  dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra")
done

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian's package may start its own daemons; airlock runs its own clamd on 127.0.0.1.
for unit in clamav-daemon clamav-freshclam; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    echo "setup: note: $unit is running as a service; airlock does not use it" >&2
  fi
done

# Python virtualenvs need python3-venv from Debian.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "setup: installing python3-venv" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

# The AWS emulator (moto) in the project's .venv, for the airlock-aws tests.
"$(dirname "${BASH_SOURCE[0]}")/venv.sh"

# cfn-lint, checkov, the SAM CLI and asl-validator, pinned, in local virtualenvs and node_modules.
"$(dirname "${BASH_SOURCE[0]}")/iac-tools.sh"
