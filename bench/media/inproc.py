"""In-process contenders of the media benchmark: pyvips (per variant and single pass) and Pillow.

Each tool turns one input file into JPEG variants whose long edge is each of SIZES ("Contain"
fit), at one JPEG quality, encoded into memory. Only that work is timed; writing the encoded
variants to disk (for the quality check) happens after the clock stops.

Two modes, both single-threaded (VIPS_CONCURRENCY=1 is forced before pyvips loads):
  serve               read JSON requests, one a line, from stdin:
                        {"tool": ..., "input": ..., "quality": 82, "sizes": [...], "out": DIR or null}
                      run the tool once and answer {"seconds": ..., "cpuSeconds": ...} on stdout
                      (CPU time of every thread of the interpreter; one interpreter
                      serves every run, so a warm-up is simply a request whose answer is ignored)
  mem TOOL INPUT QUALITY SIZES
                      in a fresh interpreter: one warm-up run, one more run, then print
                      {"baselineKib": VmRSS before any image work, "peakKib": VmHWM}

This module imports neither numpy nor anything else heavy, so memory readings are the
interpreter plus the image library.
"""

import io
import json
import os
import sys
import time

os.environ["VIPS_CONCURRENCY"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyvips  # noqa: E402
from PIL import Image  # noqa: E402

# No operation cache: every run must decode and resize again, as a fresh upload would.
pyvips.cache_set_max(0)
pyvips.cache_set_max_mem(0)
pyvips.cache_set_max_files(0)


def contain(width, height, size):
    """Dimensions of `width x height` scaled so its long edge is `size` (never upscaled)."""
    if max(width, height) <= size:
        return width, height
    if width >= height:
        return size, max(1, round(height * size / width))
    return max(1, round(width * size / height)), size


def pyvips_per_variant(path, sizes, quality):
    """The usual libvips way: one thumbnail from the file per variant (shrink-on-load each time)."""
    out = []
    for size in sizes:
        image = pyvips.Image.thumbnail(path, size)
        out.append((size, image.jpegsave_buffer(Q=quality, strip=True)))
    return out


def pyvips_single_pass(path, sizes, quality):
    """libvips' fastest single pass: decode once to the largest variant, derive the rest from it."""
    sizes = sorted(sizes, reverse=True)
    largest = pyvips.Image.thumbnail(path, sizes[0]).copy_memory()
    out = [(sizes[0], largest.jpegsave_buffer(Q=quality, strip=True))]
    for size in sizes[1:]:
        image = largest.thumbnail_image(size)
        out.append((size, image.jpegsave_buffer(Q=quality, strip=True)))
    return out


def pillow_draft(path, sizes, quality):
    """Pillow per variant: open, draft() (libjpeg DCT scaling; no-op for PNG), Lanczos resize, save."""
    out = []
    for size in sizes:
        with Image.open(path) as image:
            target = contain(image.width, image.height, size)
            image.draft("RGB", target)
            image = image.convert("RGB")
            if image.size != target:
                image = image.resize(target, Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            image.save(buf, "JPEG", quality=quality)
            out.append((size, buf.getvalue()))
    return out


TOOLS = {
    "pyvips-per-variant": pyvips_per_variant,
    "pyvips-single-pass": pyvips_single_pass,
    "pillow-draft": pillow_draft,
}


def status_kib(field):
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def write_outputs(outputs, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for size, data in outputs:
        with open(os.path.join(out_dir, f"w{size}.jpg"), "wb") as f:
            f.write(data)


def serve():
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        tool = TOOLS[req["tool"]]
        cpu_start = time.process_time()
        start = time.perf_counter()
        outputs = tool(req["input"], req["sizes"], req["quality"])
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        if any(not data for _, data in outputs):
            raise RuntimeError(f"{req['tool']} produced an empty output for {req['input']}")
        if req.get("out"):
            write_outputs(outputs, req["out"])
        print(json.dumps({"seconds": seconds, "cpuSeconds": cpu_seconds}), flush=True)


def mem(tool_name, path, quality, sizes):
    tool = TOOLS[tool_name]
    baseline = status_kib("VmRSS")
    tool(path, sizes, quality)
    tool(path, sizes, quality)
    print(json.dumps({"baselineKib": baseline, "peakKib": status_kib("VmHWM")}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    elif sys.argv[1:2] == ["mem"] and len(sys.argv) == 6:
        mem(sys.argv[2], sys.argv[3], int(sys.argv[4]), [int(s) for s in sys.argv[5].split(",")])
    else:
        sys.exit(__doc__)
