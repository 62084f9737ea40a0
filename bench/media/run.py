"""Driver of scripts/bench-media.sh: runs both sections, checks outputs, prints Markdown.

Section 1, whole process per image: each tool's command(s) for one input, wall clock from just
before the first command starts to just after the last one exits, every command wrapped in
`/usr/bin/time -f %M` for its max RSS (a tool made of several commands reports the largest).
Section 3, one 256 px variant of a 24 MP progressive JPEG: `airlock media process` vs
vipsthumbnail, whole process, as section 1. Section 4, output size at equal quality: the bytes of
airlock's section-1 variants against libvips' at the same dimensions and quality with
`optimize_coding` (vipsthumbnail --size WxH, `[Q=..,optimize_coding,strip]`).
Section 2, in one process: the media_bench example (one fresh process per round: one warm-up
run, one timed run, start-up and file read excluded) and the Python tools in one long-lived
interpreter (warmed up once per input). Peak memory of each Python tool is read in a fresh
interpreter per tool per input (inproc.py mem).

Rounds are interleaved: for each input, one untimed warm-up round, then `runs` rounds of
A B C ..., and the median of the rounds is reported.

Results also go to WORK/results.json. Exits non-zero if any tool fails or an output is missing.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

import quality

HERE = os.path.dirname(os.path.abspath(__file__))
INPUTS = [
    ("photo-24mp.jpg", "24 MP JPEG (6000x4000)"),
    ("photo-12mp.jpg", "12 MP JPEG (4000x3000)"),
    ("photo-12mp.png", "12 MP PNG (4000x3000)"),
]
PROGRESSIVE = ("photo-24mp-progressive.jpg", "24 MP progressive JPEG (6000x4000)")
# Section 5: the sanitized original's size against the upload's, for inputs whose format is
# kept (a lossy WebP stays lossy WebP, a palette PNG stays indexed).
ORIGINALS = [
    ("photo-12mp-q80.webp", "12 MP lossy WebP (q80)"),
    ("photo-3mp-palette.png", "3 MP palette PNG (256 colours)"),
]
AIRLOCK_WHOLE = "airlock media process"
MIB = 1024.0


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench-media: {msg}", file=sys.stderr, flush=True)


BUSY = set()


def busy_note():
    """Records other compilers running right now (a sign the numbers are noisy)."""
    names = []
    with open("/proc/loadavg", encoding="ascii") as f:
        running = int(f.read().split()[3].split("/")[0])
    if running >= 3:  # this driver is one; a second runnable process is common in passing
        names.append(f"{running - 1} other runnable processes")
    for name in ("rustc", "cargo", "cc1", "cc1plus", "ld"):
        if subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0:
            names.append(name)
    BUSY.update(names)
    return names


def clean_dir(path):
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        os.remove(os.path.join(path, name))


def timed_commands(cmds, env, work):
    """Runs cmds one after another; returns (wall seconds, largest max RSS in KiB)."""
    rss_files = [os.path.join(work, f"rss-{i}.txt") for i in range(len(cmds))]
    wrapped = [["/usr/bin/time", "-f", "%M", "-o", rss_files[i], *cmd] for i, cmd in enumerate(cmds)]
    start = time.perf_counter()
    for cmd in wrapped:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise BenchError(
                f"command failed ({proc.returncode}): {shlex.join(cmd[5:])}\n"
                f"{proc.stderr.decode(errors='replace')}{proc.stdout.decode(errors='replace')}"
            )
    seconds = time.perf_counter() - start
    peak = 0
    for path in rss_files:
        with open(path, encoding="ascii") as f:
            peak = max(peak, int(f.read().strip().splitlines()[-1]))
    return seconds, peak


def check_outputs(out_dir, sizes, tool, input_name):
    for size in sizes:
        path = os.path.join(out_dir, f"w{size}.jpg")
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            raise BenchError(f"{tool} left no {path} for {input_name}")


def measure_quality(out_dir, sizes, input_path, ref_dir, tool, input_name):
    """Mean of the per-variant MAEs, and the variants' dimensions."""
    maes, dims = [], []
    for size in sizes:
        path = os.path.join(out_dir, f"w{size}.jpg")
        try:
            err, width, height = quality.mae(path, input_path, ref_dir)
        except Exception as e:  # noqa: BLE001 - any decode failure is fatal, with context
            raise BenchError(f"{tool} output {path} for {input_name} is unreadable: {e}") from e
        if max(width, height) != size:
            log(f"WARNING: {tool} made {width}x{height} for w{size} of {input_name} (long edge != {size})")
        maes.append(err)
        dims.append(f"{width}x{height}")
    return statistics.mean(maes), dims


def summary(seconds):
    return {
        "runsMs": [round(s * 1000, 2) for s in seconds],
        "medianMs": round(statistics.median(seconds) * 1000, 2),
        "minMs": round(min(seconds) * 1000, 2),
        "maxMs": round(max(seconds) * 1000, 2),
    }


# ---------------------------------------------------------------- section 1: whole process


def cpu_summary(seconds):
    """CPU-time figures of a tool's runs, when every run reported one."""
    if not seconds or any(s is None for s in seconds):
        return {}
    return {
        "cpuRunsMs": [round(s * 1000, 2) for s in seconds],
        "cpuMedianMs": round(statistics.median(seconds) * 1000, 2),
    }


def whole_process_tools(args):
    sizes, q = args.sizes, args.quality
    largest = max(sizes)

    def airlock(inp, out):
        cmd = [args.airlock, "media", "process", inp, "--out", out, "--variants-only", *args.airlock_args]
        for s in sizes:
            cmd += ["--variant", f"w{s}:{s}:jpeg:{q}"]
        return [cmd]

    def vips_per_variant(inp, out):
        return [["vipsthumbnail", inp, "--size", str(s), "-o", f"{out}/w{s}.jpg[Q={q}]"] for s in sizes]

    def vips_single_pass(inp, out):
        first = f"{out}/w{largest}.jpg"
        cmds = [["vipsthumbnail", inp, "--size", str(largest), "-o", f"{first}[Q={q}]"]]
        cmds += [
            ["vipsthumbnail", first, "--size", str(s), "-o", f"{out}/w{s}.jpg[Q={q}]"]
            for s in sizes
            if s != largest
        ]
        return cmds

    tools = []
    if args.airlock_missing:
        tools.append(("airlock media process", None, args.airlock_missing))
    else:
        tools.append(("airlock media process", airlock, None))
    tools.append(("vipsthumbnail, once per variant", vips_per_variant, None))
    tools.append((f"vipsthumbnail single pass (from the {largest})", vips_single_pass, None))
    return tools


def section_whole(args, env, results):
    tools = whole_process_tools(args)
    for input_name, _label in INPUTS:
        inp = os.path.join(args.inputs, input_name)
        live = [(name, make) for name, make, missing in tools if make]
        times = {name: [] for name, _ in live}
        peaks = {name: [] for name, _ in live}
        for rnd in range(args.runs + 1):
            for name, make in live:
                out = os.path.join(args.work, "whole", slug(name), input_name)
                clean_dir(out)
                seconds, peak = timed_commands(make(inp, out), env, args.work)
                check_outputs(out, args.sizes, name, input_name)
                if rnd > 0:
                    times[name].append(seconds)
                    peaks[name].append(peak)
            busy_note()
            if rnd > 0:
                log(
                    f"whole {input_name} round {rnd}: "
                    + ", ".join(f"{n} {times[n][-1] * 1000:.0f} ms" for n, _ in live)
                )
        for name, make, missing in tools:
            row = {"section": "whole", "input": input_name, "tool": name}
            if make is None:
                row["missing"] = missing
            else:
                out = os.path.join(args.work, "whole", slug(name), input_name)
                row.update(summary(times[name]))
                row["peakRssKib"] = max(peaks[name])
                row["mae"], row["dims"] = measure_quality(
                    out, args.sizes, inp, args.refs, name, input_name
                )
            results.append(row)


# ---------------------------------------------------------------- section 3: progressive input


def section_progressive(args, env, results):
    """One small variant of a large progressive JPEG: where DCT scaling matters most."""
    input_name, _label = PROGRESSIVE
    inp = os.path.join(args.inputs, input_name)
    size, q = min(args.sizes), args.quality
    airlock_name = f"airlock media process (one {size} px variant)"
    vips_name = f"vipsthumbnail (one {size} px variant)"

    def airlock(out):
        return [[args.airlock, "media", "process", inp, "--out", out, "--variants-only",
                 *args.airlock_args, "--variant", f"w{size}:{size}:jpeg:{q}"]]

    def vips(out):
        return [["vipsthumbnail", inp, "--size", str(size), "-o", f"{out}/w{size}.jpg[Q={q}]"]]

    tools = [(vips_name, vips)]
    if args.airlock_missing:
        results.append({"section": "progressive", "input": input_name, "tool": airlock_name,
                        "missing": args.airlock_missing})
    else:
        tools.insert(0, (airlock_name, airlock))
    times = {name: [] for name, _ in tools}
    peaks = {name: [] for name, _ in tools}
    for rnd in range(args.runs + 1):
        for name, make in tools:
            out = os.path.join(args.work, "progressive", slug(name))
            clean_dir(out)
            seconds, peak = timed_commands(make(out), env, args.work)
            check_outputs(out, [size], name, input_name)
            if rnd > 0:
                times[name].append(seconds)
                peaks[name].append(peak)
        busy_note()
        if rnd > 0:
            log(f"progressive round {rnd}: " + ", ".join(f"{n} {times[n][-1] * 1000:.0f} ms" for n, _ in tools))
    for name, _ in tools:
        out = os.path.join(args.work, "progressive", slug(name))
        row = {"section": "progressive", "input": input_name, "tool": name}
        row.update(summary(times[name]))
        row["peakRssKib"] = max(peaks[name])
        row["mae"], row["dims"] = measure_quality(out, [size], inp, args.refs, name, input_name)
        results.append(row)


# ---------------------------------------------------------------- section 4: output size


def section_size(args, env, results):
    """Bytes of airlock's variants (section 1) against libvips with optimize_coding, made at
    the same dimensions and quality from the same input."""
    from PIL import Image

    if args.airlock_missing:
        return
    for input_name, _label in INPUTS:
        inp = os.path.join(args.inputs, input_name)
        ours = os.path.join(args.work, "whole", slug(AIRLOCK_WHOLE), input_name)
        theirs = os.path.join(args.work, "size", input_name)
        clean_dir(theirs)
        row = {"section": "size", "input": input_name, "variants": []}
        for s in args.sizes:
            mine = os.path.join(ours, f"w{s}.jpg")
            with Image.open(mine) as image:
                width, height = image.size
            other = os.path.join(theirs, f"w{s}.jpg")
            cmd = ["vipsthumbnail", inp, "--size", f"{width}x{height}",
                   "-o", f"{other}[Q={args.quality},optimize_coding,strip]"]
            proc = subprocess.run(cmd, env=env, capture_output=True)
            if proc.returncode != 0:
                raise BenchError(f"{shlex.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
            with Image.open(other) as image:
                if image.size != (width, height):
                    raise BenchError(f"vipsthumbnail made {image.size} for {width}x{height} of {input_name}")
            row["variants"].append({"name": f"w{s}", "dims": f"{width}x{height}",
                                    "airlockBytes": os.path.getsize(mine),
                                    "vipsBytes": os.path.getsize(other)})
        row["airlockBytes"] = sum(v["airlockBytes"] for v in row["variants"])
        row["vipsBytes"] = sum(v["vipsBytes"] for v in row["variants"])
        results.append(row)


# ---------------------------------------------------------------- section 5: originals


def section_originals(args, env, results):
    """`airlock media process` on inputs whose format the sanitized original keeps: its
    `original.*` against the input's bytes."""
    if args.airlock_missing:
        return
    for input_name, _label in ORIGINALS:
        inp = os.path.join(args.inputs, input_name)
        out = os.path.join(args.work, "originals", input_name)
        clean_dir(out)
        cmd = [args.airlock, "media", "process", inp, "--out", out, "--no-placeholder"]
        proc = subprocess.run(cmd, env=env, capture_output=True)
        if proc.returncode != 0:
            raise BenchError(f"{shlex.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
        made = [f for f in os.listdir(out) if f.startswith("original.")]
        if len(made) != 1:
            raise BenchError(f"{shlex.join(cmd)} made no single original: {sorted(os.listdir(out))}")
        results.append({"section": "originals", "input": input_name, "tool": AIRLOCK_WHOLE,
                        "original": made[0], "inputBytes": os.path.getsize(inp),
                        "airlockBytes": os.path.getsize(os.path.join(out, made[0]))})


# ---------------------------------------------------------------- section 2: in one process

PY_TOOLS = [
    ("pyvips thumbnail, once per variant", "pyvips-per-variant"),
    ("pyvips single pass (thumbnail, then thumbnail_image)", "pyvips-single-pass"),
    ("Pillow draft() + LANCZOS, once per variant", "pillow-draft"),
]
AIRLOCK_INPROC = "airlock-media (media_bench example)"
SHORT = {AIRLOCK_INPROC: "airlock-media", **{name: key for name, key in PY_TOOLS}}


def run_example(args, env, inp, out):
    cmd = [
        args.example, inp, "--quality", str(args.quality), "--runs", "1", "--warmup", "1",
        "--out", out,
    ]
    for s in args.sizes:
        cmd += ["--size", str(s)]
    proc = subprocess.run(cmd, env=env, capture_output=True)
    if proc.returncode != 0:
        raise BenchError(
            f"media_bench failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr.decode(errors='replace')}"
        )
    try:
        report = json.loads(proc.stdout)
        cpu = report.get("cpuMs") or [None]
        cpu_seconds = None if cpu[0] is None else cpu[0] / 1000.0
        return report["runsMs"][0] / 1000.0, cpu_seconds, int(report["vmHwmKib"])
    except (ValueError, KeyError, IndexError) as e:
        raise BenchError(f"media_bench printed unexpected output: {proc.stdout[:500]!r}") from e


class Worker:
    """The one Python interpreter in which the Python tools are timed."""

    def __init__(self, env):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "inproc.py"), "serve"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def run(self, tool, inp, sizes, q, out):
        req = {"tool": tool, "input": inp, "sizes": sizes, "quality": q, "out": out}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"python worker died running {tool} on {inp}")
        answer = json.loads(line)
        return answer["seconds"], answer.get("cpuSeconds")

    def close(self):
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise BenchError("python worker exited non-zero")


def python_peak(env, tool, inp, args):
    cmd = [
        sys.executable, os.path.join(HERE, "inproc.py"), "mem", tool, inp, str(args.quality),
        ",".join(str(s) for s in args.sizes),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"{shlex.join(cmd)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def section_inproc(args, env, results):
    worker = Worker(env)
    try:
        for input_name, _label in INPUTS:
            inp = os.path.join(args.inputs, input_name)
            names = ([AIRLOCK_INPROC] if not args.example_missing else []) + [n for n, _ in PY_TOOLS]
            times = {n: [] for n in names}
            cpu = {n: [] for n in names}
            hwm = []
            for rnd in range(args.runs + 1):  # round 0 is the warm-up
                if not args.example_missing:
                    out = os.path.join(args.work, "inproc", slug(AIRLOCK_INPROC), input_name)
                    clean_dir(out)
                    seconds, cpu_seconds, peak = run_example(args, env, inp, out)
                    check_outputs(out, args.sizes, AIRLOCK_INPROC, input_name)
                    if rnd > 0:
                        times[AIRLOCK_INPROC].append(seconds)
                        cpu[AIRLOCK_INPROC].append(cpu_seconds)
                        hwm.append(peak)
                for name, tool in PY_TOOLS:
                    out = os.path.join(args.work, "inproc", tool, input_name)
                    clean_dir(out)
                    seconds, cpu_seconds = worker.run(tool, inp, args.sizes, args.quality, out)
                    check_outputs(out, args.sizes, name, input_name)
                    if rnd > 0:
                        times[name].append(seconds)
                        cpu[name].append(cpu_seconds)
                busy_note()
                if rnd > 0:
                    log(
                        f"in-process {input_name} round {rnd}: "
                        + ", ".join(f"{SHORT.get(n, n)} {times[n][-1] * 1000:.0f} ms" for n in names)
                    )
            if args.example_missing:
                results.append(
                    {"section": "inproc", "input": input_name, "tool": AIRLOCK_INPROC,
                     "missing": args.example_missing}
                )
            else:
                row = {"section": "inproc", "input": input_name, "tool": AIRLOCK_INPROC}
                row.update(summary(times[AIRLOCK_INPROC]))
                row.update(cpu_summary(cpu[AIRLOCK_INPROC]))
                row["peakRssKib"] = max(hwm)
                out = os.path.join(args.work, "inproc", slug(AIRLOCK_INPROC), input_name)
                row["mae"], row["dims"] = measure_quality(out, args.sizes, inp, args.refs, AIRLOCK_INPROC, input_name)
                results.append(row)
            for name, tool in PY_TOOLS:
                row = {"section": "inproc", "input": input_name, "tool": name}
                row.update(summary(times[name]))
                row.update(cpu_summary(cpu[name]))
                mem = python_peak(env, tool, inp, args)
                row["peakRssKib"] = mem["peakKib"]
                row["baselineRssKib"] = mem["baselineKib"]
                out = os.path.join(args.work, "inproc", tool, input_name)
                row["mae"], row["dims"] = measure_quality(out, args.sizes, inp, args.refs, name, input_name)
                results.append(row)
    finally:
        worker.close()


# ---------------------------------------------------------------- report


def slug(name):
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:40]


def find(results, section, input_name, tool):
    for row in results:
        if row["section"] == section and row["input"] == input_name and row["tool"] == tool:
            return row
    return None


def find_input(results, section, input_name):
    for row in results:
        if row["section"] == section and row["input"] == input_name:
            return row
    return None


def fmt_row(row, label, base):
    if "missing" in row:
        return f"| {label} | {row['tool']} | {row['missing']} | | | |"
    ratio = ""
    if base and "medianMs" in base:
        ratio = f"{row['medianMs'] / base['medianMs']:.2f}"
    peak = f"{row['peakRssKib'] / MIB:.1f}"
    if "baselineRssKib" in row:
        peak += f" (idle {row['baselineRssKib'] / MIB:.0f})"
    return (
        f"| {label} | {row['tool']} | {row['medianMs']:.1f} ({row['minMs']:.0f}-{row['maxMs']:.0f}) "
        f"| {ratio} | {peak} | {row['mae']:.3f} |"
    )


def report(args, results, meta):
    lines = []
    sizes = "/".join(str(s) for s in args.sizes)
    lines.append(
        f"Variants: long edge {sizes}, JPEG quality {args.quality}, Contain fit; single-threaded; "
        f"median of {args.runs} interleaved runs (min-max in brackets)."
    )
    lines.append("")
    lines.append("### 1. Whole process per image (wall clock of the command(s); max RSS by /usr/bin/time)")
    lines.append("")
    lines.append("| input | tool | median ms (min-max) | vs vipsthumbnail per variant | peak RSS MiB | MAE |")
    lines.append("|---|---|---|---|---|---|")
    for input_name, label in INPUTS:
        base = find(results, "whole", input_name, "vipsthumbnail, once per variant")
        for row in [r for r in results if r["section"] == "whole" and r["input"] == input_name]:
            lines.append(fmt_row(row, label, base))
    lines.append("")
    lines.append(
        "### 2. In one process (start-up and file read excluded; peak = VmHWM of a fresh process "
        "per tool per input, idle = the interpreter before any image work)"
    )
    lines.append("")
    lines.append(
        "| input | tool | median ms (min-max) | vs pyvips per variant | peak RSS MiB | MAE | median CPU ms |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for input_name, label in INPUTS:
        base = find(results, "inproc", input_name, PY_TOOLS[0][0])
        for row in [r for r in results if r["section"] == "inproc" and r["input"] == input_name]:
            cpu_ms = f"{row['cpuMedianMs']:.1f}" if "cpuMedianMs" in row else "n/a"
            lines.append(fmt_row(row, label, base) + f" {cpu_ms} |")
    lines.append("")
    lines.append(f"### 3. {PROGRESSIVE[1]}: one {min(args.sizes)} px variant, whole process")
    lines.append("")
    lines.append("| input | tool | median ms (min-max) | vs vipsthumbnail | peak RSS MiB | MAE |")
    lines.append("|---|---|---|---|---|---|")
    prog = [r for r in results if r["section"] == "progressive"]
    base = next((r for r in prog if r["tool"].startswith("vipsthumbnail")), None)
    for row in prog:
        lines.append(fmt_row(row, PROGRESSIVE[1], base))
    lines.append("")
    lines.append(
        f"### 4. Output size at equal quality (Q {args.quality}): airlock's variants (section 1) "
        "against libvips with optimize_coding at the same dimensions"
    )
    lines.append("")
    lines.append("| input | variant | airlock bytes | vips optimize_coding bytes | ratio |")
    lines.append("|---|---|---|---|---|")
    for input_name, label in INPUTS:
        row = find_input(results, "size", input_name)
        if row is None:
            continue
        for v in row["variants"]:
            lines.append(
                f"| {label} | {v['name']} ({v['dims']}) | {v['airlockBytes']} | {v['vipsBytes']} "
                f"| {v['airlockBytes'] / v['vipsBytes']:.3f} |"
            )
        lines.append(
            f"| {label} | all three | {row['airlockBytes']} | {row['vipsBytes']} "
            f"| {row['airlockBytes'] / row['vipsBytes']:.3f} |"
        )
    lines.append("")
    lines.append("### 5. Sanitized original against the upload (`airlock media process`, original quality as the input's)")
    lines.append("")
    lines.append("| input | input bytes | original | original bytes | ratio |")
    lines.append("|---|---|---|---|---|")
    for input_name, label in ORIGINALS:
        row = find_input(results, "originals", input_name)
        if row is None:
            continue
        lines.append(
            f"| {label} | {row['inputBytes']} | {row['original']} | {row['airlockBytes']} "
            f"| {row['airlockBytes'] / row['inputBytes']:.3f} |"
        )
    lines.append("")
    lines.append("MAE: mean absolute error per channel (0-255) against a lossless Lanczos3 reference "
                 "resize of the full decode, averaged over the variants.")
    lines.append("")
    lines.append("### Targets")
    lines.append("")
    lines.append("| target | input | airlock | reference | ratio | limit | met? |")
    lines.append("|---|---|---|---|---|---|---|")
    for input_name, label in INPUTS:
        short = label.split(" (")[0]
        a = find(results, "whole", input_name, "airlock media process")
        v = find(results, "whole", input_name, "vipsthumbnail, once per variant")
        limit = 0.5 if input_name.endswith(".png") else 0.35
        lines.append(target_line("whole-process time / vipsthumbnail per variant", short, a, v, "medianMs", limit, "ms"))
        lines.append(target_line("peak RSS (whole process) / vipsthumbnail", short, a, v, "peakRssKib", 1.0, "MiB"))
        lines.append(target_line("MAE / vipsthumbnail per variant (same quality)", short, a, v, "mae", 1.05, ""))
        ai = find(results, "inproc", input_name, AIRLOCK_INPROC)
        pv = find(results, "inproc", input_name, PY_TOOLS[0][0])
        ps = find(results, "inproc", input_name, PY_TOOLS[1][0])
        lines.append(target_line("in-process time / pyvips per variant", short, ai, pv, "medianMs", 0.5, "ms"))
        lines.append(target_line("in-process time / pyvips single pass", short, ai, ps, "medianMs", 0.65, "ms"))
        lines.append(target_line("in-process CPU time / pyvips per variant", short, ai, pv, "cpuMedianMs", 0.5, "ms"))
        lines.append(target_line("in-process CPU time / pyvips single pass", short, ai, ps, "cpuMedianMs", 0.65, "ms"))
        lines.append(target_line("in-process MAE / pyvips per variant (same quality)", short, ai, pv, "mae", 1.05, ""))
        size_row = find_input(results, "size", input_name)
        lines.append(target_line("output bytes / vips optimize_coding (same size, quality)", short,
                                 size_row, size_row and {"airlockBytes": size_row["vipsBytes"]},
                                 "airlockBytes", 1.0, "B"))
    prog = [r for r in results if r["section"] == "progressive"]
    pa = next((r for r in prog if r["tool"].startswith("airlock")), None)
    pv = next((r for r in prog if r["tool"].startswith("vipsthumbnail")), None)
    short = "24 MP progressive JPEG"
    lines.append(target_line(f"one {min(args.sizes)} px variant: time / vipsthumbnail", short, pa, pv, "medianMs", 1.0, "ms"))
    lines.append(target_line(f"one {min(args.sizes)} px variant: peak RSS / vipsthumbnail", short, pa, pv, "peakRssKib", 1.0, "MiB"))
    lines.append(target_line(f"one {min(args.sizes)} px variant: MAE / vipsthumbnail", short, pa, pv, "mae", 1.05, ""))
    for input_name, label in ORIGINALS:
        row = find_input(results, "originals", input_name)
        lines.append(target_line("sanitized original bytes / input bytes", label, row,
                                 row and {"airlockBytes": row["inputBytes"]}, "airlockBytes", 1.2, "B"))
    lines.append("")
    lines.append(
        f"Machine: {meta['cpu']} ({meta['cpus']} CPUs visible), {meta['memGib']:.0f} GiB, {meta['os']}; "
        f"libvips {meta['libvips']}, Pillow {meta['pillow']}; load average at start {meta['loadStart']}, "
        f"at end {meta['loadEnd']}."
    )
    if meta["busy"]:
        lines.append("")
        lines.append(
            f"**Noisy:** other work was running during the run ({', '.join(meta['busy'])}); "
            "the numbers may be inflated and spread out."
        )
    return "\n".join(lines)


def target_line(what, short, a, ref, key, limit, unit):
    def val(row):
        if row is None or "missing" in row or key not in row:
            return None
        v = row[key]
        return v / MIB if unit == "MiB" else v

    av, rv = val(a), val(ref)
    if av is None or rv is None:
        why = (a or {}).get("missing") or "n/a"
        return f"| {what} | {short} | {why} | {'' if rv is None else fmt(rv, unit)} | n/a | <= {limit} | n/a |"
    ratio = av / rv
    met = "met" if ratio <= limit else "not met"
    return f"| {what} | {short} | {fmt(av, unit)} | {fmt(rv, unit)} | {ratio:.3f} | <= {limit} | {met} |"


def fmt(v, unit):
    if unit == "ms":
        return f"{v:.1f} ms"
    if unit == "MiB":
        return f"{v:.1f} MiB"
    if unit == "B":
        return f"{v} B"
    return f"{v:.3f}"


def machine_meta():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as f:
        mem_kib = int(f.readline().split()[1])
    os_name = platform.platform()
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    import PIL
    import pyvips

    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memGib": mem_kib / 1024 / 1024,
        "os": os_name,
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "pillow": PIL.__version__,
        "loadStart": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quality", type=int, default=82)
    parser.add_argument("--size", dest="sizes", type=int, action="append")
    parser.add_argument("--airlock", required=True)
    parser.add_argument("--airlock-missing", default="", help="why the airlock CLI row is n/a")
    parser.add_argument("--airlock-arg", dest="airlock_args", action="append", default=[],
                        help="extra argument for `airlock media process` (repeatable)")
    parser.add_argument("--example", required=True)
    parser.add_argument("--example-missing", default="", help="why the media_bench row is n/a")
    args = parser.parse_args()
    args.sizes = args.sizes or [2048, 1024, 256]
    args.refs = os.path.join(args.inputs, "reference")
    args.work = os.path.abspath(args.work)
    os.makedirs(args.work, exist_ok=True)

    env = dict(os.environ)
    env.update(
        VIPS_CONCURRENCY="1", RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKIO_WORKER_THREADS="1",
    )
    meta = machine_meta()
    busy_note()
    results = []
    try:
        log(f"section 1: whole process, {args.runs} runs + 1 warm-up per input")
        section_whole(args, env, results)
        log(f"section 3: one small variant of a progressive JPEG, {args.runs} runs + 1 warm-up")
        section_progressive(args, env, results)
        log("section 4: output size against libvips with optimize_coding")
        section_size(args, env, results)
        log("section 5: sanitized originals of a lossy WebP and a palette PNG")
        section_originals(args, env, results)
        log(f"section 2: in one process, {args.runs} runs + 1 warm-up per input")
        section_inproc(args, env, results)
    except BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)
    meta["loadEnd"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["busy"] = sorted(BUSY)
    with open(os.path.join(args.work, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "runs": args.runs, "quality": args.quality, "sizes": args.sizes,
                   "results": results}, f, indent=2)
    text = report(args, results, meta)
    with open(os.path.join(args.work, "results.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
