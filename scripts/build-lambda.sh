#!/usr/bin/env bash
# Builds every Lambda function as `sam build` does, with cargo-lambda (pinned, from PyPI, in
# .venv/lambda; Zig links for the Lambda target's glibc): `cargo lambda build --release` of
# the airlock-lambda crate's binaries (sign, ingest, worker), into target/lambda/<name>/bootstrap.
# This machine's toolchain has only the x86_64 target, so this builds x86_64; pass --arm64 (with
# `rustup target add aarch64-unknown-linux-gnu`) for the template's default architecture.
#
# Extra arguments go to cargo-lambda, e.g. `--profile lambda` instead of the release profile
# for the smallest binaries (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/lambda/bin/cargo-lambda ] || scripts/iac-tools.sh
export PATH="$PWD/.venv/lambda/bin:$PATH"

profile=(--release)
for arg in "$@"; do
  case "$arg" in --profile|--profile=*) profile=() ;; esac
done

started=$(date +%s)
cargo lambda build "${profile[@]}" --locked -p airlock-lambda --bins "$@"
# provided.al2023, the functions' runtime, has glibc 2.34: a binary that needs a newer one
# fails at cold start there, whatever it does on this machine.
runtime_glibc=2.34
for function in sign ingest worker; do
  bootstrap=target/lambda/$function/bootstrap
  [ -x "$bootstrap" ] || { echo "build-lambda: $bootstrap was not built" >&2; exit 1; }
  needs=$(objdump -T "$bootstrap" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
  if [ "$(printf '%s\n%s\n' "$needs" "$runtime_glibc" | sort -V | tail -1)" != "$runtime_glibc" ]; then
    echo "build-lambda: $bootstrap needs glibc $needs; the Lambda runtime has $runtime_glibc" >&2
    exit 1
  fi
  printf 'build-lambda: %-7s %s (%s bytes, glibc >= %s)\n' "$function" "$bootstrap" "$(stat -c %s "$bootstrap")" "$needs"
done
echo "build-lambda: done in $(( $(date +%s) - started )) s" >&2
