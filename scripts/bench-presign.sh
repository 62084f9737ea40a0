#!/usr/bin/env bash
# Benchmark (not a test) of presigning a PutObject URL, in one process and one thread each:
# airlock-presign's `presign_bench` example against boto3's
# generate_presigned_url('put_object', Params={Bucket, Key, ContentType, ContentLength},
# ExpiresIn=300), the same signed headers (content-length;content-type;host).
# Prints a Markdown table (presigns/s, airlock vs boto3, ratio; target >= 50x).
# boto3 (pinned) lives in a venv under target/bench/presign; no request leaves the machine.
# Usage: scripts/bench-presign.sh [airlock iterations, default 200000] [boto3 iterations, default 20000]
set -euo pipefail
cd "$(dirname "$0")/.."

airlock_n="${1:-200000}"
boto3_n="${2:-20000}"
boto3_version="1.44.8"
work="target/bench/presign"
venv="$work/venv"

mkdir -p "$work"
if [ ! -x "$venv/bin/python" ]; then
  echo "bench-presign: creating $venv" >&2
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import boto3, sys; sys.exit(boto3.__version__ != '$boto3_version')" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "boto3==$boto3_version"
fi

echo "bench-presign: building (release)" >&2
cargo build --release --locked -p airlock-presign --example presign_bench >&2
example=target/release/examples/presign_bench

echo "bench-presign: airlock, $airlock_n presigns" >&2
airlock_out=$("$example" "$airlock_n")
echo "$airlock_out" >&2
airlock_rate=$(sed -n 's/^presigns_per_sec=//p' <<<"$airlock_out")

echo "bench-presign: boto3 $boto3_version, $boto3_n presigns" >&2
boto3_out=$("$venv/bin/python" - "$boto3_n" <<'PY'
import sys, time
import boto3
from botocore.config import Config

n = int(sys.argv[1])
s3 = boto3.client(
    "s3",
    region_name="us-east-1",
    aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
    aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    config=Config(signature_version="s3v4"),
)
params = {
    "Bucket": "airlock-uploads",
    "Key": "incoming/2026/05/09/0196b3f2-7c1e-7a3b-9f4e-2d8c5b1a0e77/photo.jpg",
    "ContentType": "image/jpeg",
    "ContentLength": 1048576,
}
url = s3.generate_presigned_url("put_object", Params=params, ExpiresIn=300)
signed = url.split("X-Amz-SignedHeaders=")[1].split("&")[0]
print("signed_headers=" + signed.replace("%3B", ";"), file=sys.stderr)
for _ in range(max(n // 10, 1)):  # warm-up
    s3.generate_presigned_url("put_object", Params=params, ExpiresIn=300)
start = time.perf_counter()
for _ in range(n):
    s3.generate_presigned_url("put_object", Params=params, ExpiresIn=300)
elapsed = time.perf_counter() - start
print(f"presigns_per_sec={n / elapsed:.0f}")
PY
)
boto3_rate=$(sed -n 's/^presigns_per_sec=//p' <<<"$boto3_out")

python3 - "$airlock_rate" "$boto3_rate" "$airlock_n" "$boto3_n" "$boto3_version" <<'PY'
import sys
airlock, boto3, an, bn, version = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ratio = airlock / boto3
print("| presigned PutObject (content-length;content-type;host), 1 thread | presigns/s | µs each | calls |")
print("|---|---:|---:|---:|")
print(f"| airlock-presign | {airlock:,.0f} | {1e6 / airlock:.2f} | {an} |")
print(f"| boto3 {version} generate_presigned_url | {boto3:,.0f} | {1e6 / boto3:.1f} | {bn} |")
print()
print(f"Ratio airlock / boto3: **{ratio:.0f}x** (target >= 50x: {'met' if ratio >= 50 else 'NOT met'}).")
PY
