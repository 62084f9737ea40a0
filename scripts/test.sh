#!/usr/bin/env bash
# Every check and every test: the template and state machine checkers, formatting, lints,
# the Lambda functions' build, the upload page and the quarantine console in headless
# Chromium, then all tests against real servers (each test starts the clamd or AWS emulator
# it needs on 127.0.0.1 and stops it after).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh chromium
# The AWS deployment, offline: the state machine must be valid Amazon States Language, as
# Step Functions will check it, and template.yaml clean under cfn-lint, checkov and
# `sam validate --lint`.
scripts/check-iac.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The Lambda functions as `sam build` builds them: `cargo lambda build --release`, linked by
# Zig for the Lambda runtime's glibc (x86_64 here; the template defaults to arm64). Without
# optimization: what this checks (every function compiles and links for Lambda) does not
# depend on it, and an optimized build would take a third of the CI run on two cores.
CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=false scripts/build-lambda.sh
# The upload page that `airlock dev` serves, end to end in headless Chromium: a photo, the
# EICAR file and a 200 MiB multipart upload through the page, against the debug binary. Then
# the quarantine console (standalone and under `airlock dev`): sign-in with tokens and
# roles, a hostile filename shown as text, release, export, purge, forged posts refused.
cargo build -p airlock-cli --locked
scripts/build-web.sh
node --test web/tests/lib.test.mjs
node web/tests/upload.mjs
node web/tests/console.mjs

if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests; they go first so the run ends with nextest's summary.
  cargo test --workspace --locked --doc
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
