#!/usr/bin/env bash
# Benchmarks (not tests): prints a comparison table.
#  1. Scan throughput of one large generated object (default 1 GiB) through airlock's scan
#     stage vs `clamdscan --stream` of the same bytes to the same clamd, and airlock's peak RSS.
#  2. Bytes inspect reads from that object.
#  3. Replay of many small mixed fixture cases: objects per second and median time per object.
#  4. Replay of large captures (default 500,000 S3 records, and an SQS batch of 10,000
#     messages) announcing objects that do not exist: peak RSS of the whole `airlock replay`
#     process (/usr/bin/time -v), which must stay bounded whatever the capture's size.
# Starts its own clamd on 127.0.0.1 (limits raised so the whole stream is scanned) and stops it.
# Usage: scripts/bench.sh [size, e.g. "1 GiB"] [replay count] [runs] [capture records] [SQS messages]
set -euo pipefail
cd "$(dirname "$0")/.."

size="${1:-1 GiB}"
count="${2:-200}"
runs="${3:-3}"
capture_records="${4:-500000}"
sqs_messages="${5:-10000}"
work="target/bench"

scripts/setup.sh
cargo build --release --locked -p airlock-cli >&2
airlock=target/release/airlock
mkdir -p "$work/clamd"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
conf="$PWD/$work/clamd/clamd.conf"
cat > "$conf" <<CONF
Foreground yes
DatabaseDirectory $PWD/fixtures/clamav
TCPSocket $port
TCPAddr 127.0.0.1
TemporaryDirectory $PWD/$work/clamd
PidFile $PWD/$work/clamd/clamd.pid
LogFile $PWD/$work/clamd/clamd.log
StreamMaxLength 2000M
MaxFileSize 2000M
MaxScanSize 4000M
MaxScanTime 3600000
AlertExceedsMax yes
AlertEncrypted yes
CONF
/usr/sbin/clamd -c "$conf" >"$work/clamd/stdout.log" 2>&1 &
clamd_pid=$!
trap 'kill $clamd_pid 2>/dev/null || true; wait $clamd_pid 2>/dev/null || true' EXIT
clamdscan --config-file="$conf" --ping 60:1 >/dev/null 2>&1 || { cat "$work/clamd/stdout.log" >&2; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d'+sys.argv[1]))" "$1"; }

echo "bench: generating and scanning $size, $runs runs each, interleaved" >&2
airlock_secs=(); clamdscan_secs=(); rss=(); inspect_bytes=""
for run in $(seq "$runs"); do
  out=$("$airlock" bench scan --clamd "127.0.0.1:$port" --dir "$work" --size "$size")
  path=$(echo "$out" | field '["path"]')
  verdict=$(echo "$out" | field '["scan"]["verdict"]["outcome"]')
  [ "$verdict" = pass ] || { echo "bench: airlock scan did not pass: $out" >&2; exit 1; }
  airlock_secs+=("$(echo "$out" | field '["scan"]["seconds"]')")
  rss+=("$(echo "$out" | field '["peakRssKib"]')")
  inspect_bytes=$(echo "$out" | field '["inspect"]["contentBytesRead"]')
  inspect_opened=$(echo "$out" | field '["inspect"]["streamsOpened"]')
  bytes=$(echo "$out" | field '["bytes"]')

  start=$(date +%s.%N)
  reply=$(clamdscan --config-file="$conf" --stream --no-summary "$path")
  end=$(date +%s.%N)
  case "$reply" in *": OK") ;; *) echo "bench: clamdscan said: $reply" >&2; exit 1 ;; esac
  clamdscan_secs+=("$(echo "$end - $start" | bc -l)")
  echo "bench: run $run: airlock ${airlock_secs[-1]} s, clamdscan ${clamdscan_secs[-1]} s" >&2
done
a=$(printf '%s\n' "${airlock_secs[@]}" | median)
c=$(printf '%s\n' "${clamdscan_secs[@]}" | median)
r=$(printf '%s\n' "${rss[@]}" | sort -g | tail -1)

echo "bench: replaying $count small mixed cases" >&2
replay=$("$airlock" bench replay --clamd "127.0.0.1:$port" --count "$count" --dir "$work/replay")
objects=$(echo "$replay" | field '["objects"]')
rate=$(echo "$replay" | field '["objectsPerSecond"]')
med=$(echo "$replay" | field '["medianMs"]')
p95=$(echo "$replay" | field '["p95Ms"]')

# A capture file of N records announcing objects that are not in the store (each is run
# through the state machine and skipped): `s3` is one notification with N records, `sqs` a
# Lambda SQS batch of N messages, each body a notification.
make_capture() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
n, shape, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(out, "w") as f:
    f.write('{"Records": [')
    for i in range(n):
        record = {
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
            "eventTime": "2025-03-14T10:11:43.755Z", "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:AROAXK4PQ7ZL3NH2W6TYB:airlock-api"},
            "requestParameters": {"sourceIPAddress": "203.0.113.42"},
            "responseElements": {"x-amz-request-id": "9HT7FJ93YL19IN72", "x-amz-id-2": "HPZh5Y5XfuURg7OLE4KL8bBbrMa0f0"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "airlock-incoming-created",
                   "bucket": {"name": "airlock-uploads", "arn": "arn:aws:s3:::airlock-uploads"},
                   "object": {"key": "incoming/bench/attachment/01937a3b-0000-7000-8000-%012x" % i,
                              "size": 1024, "eTag": "%032x" % i, "sequencer": "%018X" % i}},
        }
        if shape == "sqs":
            record = {"messageId": "059f36b4-87a3-44ab-83d2-%012x" % i, "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                      "body": json.dumps({"Records": [record]}), "attributes": {"ApproximateReceiveCount": "1"},
                      "messageAttributes": {}, "eventSource": "aws:sqs",
                      "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:airlock-ingest", "awsRegion": "eu-west-1"}
        f.write((", " if i else "") + json.dumps(record))
    f.write("]}\n")
PY
}

# Replays a capture under /usr/bin/time; prints "<peak RSS KiB> <objects/s> <objects> <file MiB>".
replay_capture() {
  local file="$1" data="$work/capture-data"
  rm -rf "$data"
  /usr/bin/time -v "$airlock" replay --clamd "127.0.0.1:$port" --data-dir "$data" "$file" \
    >/dev/null 2>"$work/capture.stderr" || { tail -5 "$work/capture.stderr" >&2; exit 1; }
  local kib summary
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/capture.stderr")
  summary=$(grep ' objects: ' "$work/capture.stderr" | tail -1)
  echo "bench: $summary" >&2
  echo "$kib $(echo "$summary" | sed -E 's/.*\(([0-9.]+) objects\/s\).*/\1/') ${summary%% objects:*} $(( $(stat -c %s "$file") / 1048576 ))"
}

echo "bench: replaying a capture of $capture_records S3 records" >&2
make_capture "$capture_records" s3 "$work/capture-s3.json"
read -r s3_kib s3_rate s3_objects s3_mib < <(replay_capture "$work/capture-s3.json")
echo "bench: replaying an SQS batch of $sqs_messages messages" >&2
make_capture "$sqs_messages" sqs "$work/capture-sqs.json"
read -r sqs_kib sqs_rate sqs_objects sqs_mib < <(replay_capture "$work/capture-sqs.json")
rm -f "$work/capture-s3.json" "$work/capture-sqs.json"

mib=$(echo "$bytes / 1048576" | bc -l)
printf '\n| measure | airlock | reference | ratio / target |\n|---|---|---|---|\n'
printf '| scan %s (median of %s) | %.2f s (%.0f MiB/s) | clamdscan --stream: %.2f s (%.0f MiB/s) | %.3f (target <= 1.05) |\n' \
  "$size" "$runs" "$a" "$(echo "$mib / $a" | bc -l)" "$c" "$(echo "$mib / $c" | bc -l)" "$(echo "$a / $c" | bc -l)"
printf '| peak RSS while scanning | %.1f MiB | | target < 64 MiB |\n' "$(echo "$r / 1024" | bc -l)"
printf '| bytes inspect reads | %s B (+ HEAD), %s streams opened | object: %s B | target <= 8192 B |\n' "$inspect_bytes" "$inspect_opened" "$bytes"
printf '| replay %s small mixed objects | %.0f objects/s | per-file clamscan tools: 10-30 s/object | target >= 100/s |\n' "$objects" "$rate"
printf '| median time per object (p95) | %.1f ms (%.1f ms) | | target <= 20 ms |\n' "$med" "$p95"
printf '| peak RSS replaying %s S3 records (%s MiB capture) | %.1f MiB (%.0f objects/s) | | target < 300 MiB |\n' \
  "$s3_objects" "$s3_mib" "$(echo "$s3_kib / 1024" | bc -l)" "$s3_rate"
printf '| peak RSS replaying an SQS batch of %s messages (%s MiB) | %.1f MiB (%.0f objects/s) | | target < 300 MiB |\n' \
  "$sqs_objects" "$sqs_mib" "$(echo "$sqs_kib / 1024" | bc -l)" "$sqs_rate"
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(clamdscan --config-file="$conf" --version)"
