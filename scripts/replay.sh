#!/usr/bin/env bash
# The main job: replays the bundled fixtures through the pipeline on this machine.
# Installs clamd if missing, builds airlock, and runs `airlock replay`, which starts clamd on
# 127.0.0.1 with the project's test signatures (fixtures/clamav/) and stops it at the end.
# Extra arguments go to `airlock replay` (e.g. -v for each execution's history, --json).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked -p airlock-cli
data_dir="${AIRLOCK_DATA_DIR:-.airlock}"
echo "replay: state in $data_dir (objects under $data_dir/buckets/, intents in $data_dir/intents.sqlite)" >&2
exec target/release/airlock replay --data-dir "$data_dir" --signatures fixtures/clamav "$@" fixtures/cases fixtures/events
