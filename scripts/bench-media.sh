#!/usr/bin/env bash
# Benchmark (not a test) of airlock's media stage: prints Markdown tables comparing airlock
# with libvips (vipsthumbnail, pyvips) and Pillow on the same real photographs, single-threaded,
# for three JPEG variants (long edge 2048, 1024, 256; quality $QUALITY; "Contain" fit).
#   1. whole process per image: `airlock media process` vs vipsthumbnail (per variant, and
#      single pass), wall clock and max RSS (/usr/bin/time -f %M);
#   2. in one process (start-up excluded): the airlock-media `media_bench` example vs pyvips
#      (per variant, single pass) and Pillow with draft();
# plus output quality (MAE against a lossless reference resize) and the targets, met or not.
# Prepares its inputs once under target/bench/media/inputs (from Debian's mate-backgrounds).
# See docs/benchmarks-media.md. Fails (non-zero) if any tool errors or leaves an output missing.
# Usage: scripts/bench-media.sh [runs, default 5]   (env: QUALITY=82)
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-5}"
quality="${QUALITY:-82}"
work="target/bench/media"
venv="$work/venv"

# --- system packages, only what is missing
need=()
command -v vipsthumbnail >/dev/null 2>&1 || need+=(libvips-tools)
[ -d /usr/share/backgrounds/mate ] || need+=(mate-backgrounds)
[ -x /usr/bin/time ] || need+=(time)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench-media: installing ${need[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- Python side: pinned pyvips (cffi ABI mode on Debian's libvips42), Pillow, numpy
mkdir -p "$work"
if [ ! -x "$venv/bin/python" ]; then
  echo "bench-media: creating $venv" >&2
  python3 -m venv "$venv"
fi
req=bench/media/requirements.txt
if ! cmp -s "$req" "$venv/.requirements.txt"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.requirements.txt"
fi

# --- Rust side
echo "bench-media: building (release)" >&2
cargo build --release --locked -p airlock-cli -p airlock-media --bin airlock --example media_bench >&2
airlock=target/release/airlock
example=target/release/examples/media_bench
[ -x "$example" ] || { echo "bench-media: $example was not built" >&2; exit 1; }
airlock_missing=""
airlock_args=()
if ! help=$("$airlock" media process --help 2>&1); then
  airlock_missing="n/a (airlock media process missing)"
  echo "bench-media: WARNING: $airlock has no 'media process' command; its row will read n/a" >&2
elif grep -q -- '--no-placeholder' <<<"$help"; then
  # libvips computes no placeholder, so neither does airlock here.
  airlock_args+=(--airlock-arg=--no-placeholder)
fi

# --- inputs (cached) and the run itself; single-threaded everywhere
export VIPS_CONCURRENCY=1 RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
"$venv/bin/python" bench/media/prepare.py "$work/inputs"

busy=$(pgrep -x rustc || true)
[ -z "$busy" ] || echo "bench-media: WARNING: rustc is running; numbers will be noisy" >&2

"$venv/bin/python" bench/media/run.py \
  --inputs "$work/inputs" --work "$work/run" --runs "$runs" --quality "$quality" \
  --airlock "$airlock" --airlock-missing "$airlock_missing" ${airlock_args[@]+"${airlock_args[@]}"} \
  --example "$example"
