#!/usr/bin/env bash
# Benchmark (not a test) of the upload API's `POST /uploads` end to end in `airlock dev`:
# HTTP request -> token verified -> policy checked -> intent stored in SQLite -> URL signed
# -> JSON answer. `airlock bench api` starts `airlock dev` in its own process on 127.0.0.1
# (fresh data dir under target/bench/api, its own clamd from fixtures/clamav) and loads it
# from keep-alive HTTP/1.1 connections in the same process, sharing the machine's cores.
# Two runs: no Idempotency-Key, then a share of requests with a fresh one.
# Prints a Markdown table with the target beside each figure (target >= 5,000 requests/s).
# Usage: scripts/bench-api.sh [requests, default 20000] [concurrency, default 48] [idempotent %, default 50]
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${1:-20000}"
concurrency="${2:-48}"
idempotent="${3:-50}"
target=5000

scripts/setup.sh
echo "bench-api: building (release)" >&2
cargo build --release --locked -p airlock-cli >&2
airlock=target/release/airlock

echo "bench-api: $requests requests per run, $concurrency connections" >&2
out=$("$airlock" bench api --requests "$requests" --concurrency "$concurrency" \
  --idempotent-percent "$idempotent" --dir target/bench/api)

python3 - "$out" "$target" <<'PY'
import json, sys
report, target = json.loads(sys.argv[1]), float(sys.argv[2])
print("| run | req/s | target | met? | p50 ms | p90 ms | p99 ms | max ms | CPU µs/req | errors |")
print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
for r in report["runs"]:
    rate = r["requestsPerSecond"]
    cpu = r.get("cpuUsPerRequest")
    print(f"| {r['label']} | {rate:,.0f} | >= {target:,.0f} | {'met' if rate >= target else 'NOT met'} "
          f"| {r['p50Ms']:.2f} | {r['p90Ms']:.2f} | {r['p99Ms']:.2f} | {r['maxMs']:.1f} "
          f"| {'-' if cpu is None else f'{cpu:.0f}'} | {r['errors']} |")
print()
print(f"{report['runs'][0]['requests']} requests per run. Measured: {report['measuredWith']}.")
PY
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
