//! Times `airlock_media::process_variants_only` in one process, for scripts/bench-media.sh
//! (or, with `--with-original`, `airlock_media::process`: the media stage's whole job, the
//! sanitized full-size original re-encoded as well).
//!
//! Reads the input once (not timed), runs `--warmup` untimed passes, then `--runs` timed
//! passes; only the call that decodes, resizes and encodes every variant is inside the clock.
//! Prints one JSON object: per-run times, their median, per-run CPU time of the process's
//! threads (`cpuMs`, Linux), and the process's peak RSS (`VmHWM`,
//! which includes the input bytes held in memory). With `--out DIR`, the variants of the last
//! run are written to `DIR/{name}.{extension}` after timing.
//!
//! ```text
//! cargo run --release -p airlock-media --example media_bench -- INPUT \
//!     [--quality 82] [--runs 5] [--warmup 1] [--size 2048 --size 1024 --size 256] [--out DIR]
//!     [--with-original]
//! ```
//! Variants are JPEG, "Contain" fit, named `w{size}`; no placeholder is computed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use airlock_media::{
    Encoded, MediaError, MediaOptions, VariantSpec, process, process_variants_only,
};

struct Args {
    input: PathBuf,
    quality: u8,
    runs: usize,
    warmup: usize,
    sizes: Vec<u32>,
    out: Option<PathBuf>,
    with_original: bool,
}

const USAGE: &str = "usage: media_bench INPUT [--quality Q] [--runs N] [--warmup N] [--size S]... [--out DIR] [--with-original]";

fn parse_args() -> Result<Args, String> {
    let mut input = None;
    let mut quality = 82;
    let mut runs = 5;
    let mut warmup = 1;
    let mut sizes = Vec::new();
    let mut out = None;
    let mut with_original = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--quality" => quality = parse(&value("--quality")?, "--quality")?,
            "--runs" => runs = parse(&value("--runs")?, "--runs")?,
            "--warmup" => warmup = parse(&value("--warmup")?, "--warmup")?,
            "--size" => sizes.push(parse(&value("--size")?, "--size")?),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--with-original" => with_original = true,
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"));
            }
            path if input.is_none() => input = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra}\n{USAGE}")),
        }
    }
    if sizes.is_empty() {
        sizes = vec![2048, 1024, 256];
    }
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(Args {
        input: input.ok_or(USAGE)?,
        quality,
        runs,
        warmup,
        sizes,
        out,
        with_original,
    })
}

fn parse<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name}: not a valid value: {text}"))
}

/// Peak resident set size of this process so far, in KiB.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median_ms(times: &[f64]) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        f64::midpoint(sorted[mid - 1], sorted[mid])
    }
}

fn run(args: &Args) -> Result<serde_json::Value, String> {
    let bytes = std::fs::read(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let options = MediaOptions {
        variants: args
            .sizes
            .iter()
            .map(|&size| VariantSpec::jpeg_contain(size, args.quality))
            .collect(),
        placeholder: false,
        ..MediaOptions::default()
    };

    // Every output of one run, named: the variants, and the original with --with-original.
    let job = |bytes: &[u8]| -> Result<Vec<(String, Encoded)>, MediaError> {
        if args.with_original {
            let done = process(bytes, &options)?;
            let mut outputs = done.variants;
            outputs.push(("original".to_owned(), done.original));
            Ok(outputs)
        } else {
            Ok(process_variants_only(bytes, &options)?.variants)
        }
    };
    for _ in 0..args.warmup {
        std::hint::black_box(job(&bytes).map_err(|e| e.to_string())?);
    }
    let mut times = Vec::with_capacity(args.runs);
    let mut cpu_times = Vec::with_capacity(args.runs);
    let mut last = None;
    for _ in 0..args.runs {
        let cpu_start = process_cpu_ns();
        let start = Instant::now();
        let processed = job(std::hint::black_box(&bytes));
        let elapsed = start.elapsed();
        let cpu = process_cpu_ns()
            .zip(cpu_start)
            .map(|(end, begin)| end.saturating_sub(begin));
        let processed = processed.map_err(|e| format!("{} ({})", e, e.code()))?;
        times.push(elapsed.as_secs_f64() * 1000.0);
        if let Some(ns) = cpu {
            #[allow(clippy::cast_precision_loss)]
            cpu_times.push(ns as f64 / 1e6);
        }
        last = Some(processed);
    }
    let hwm = vm_hwm_kib();
    let processed = last.ok_or("no run")?;

    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (name, encoded) in &processed {
            let path = dir.join(format!("{name}.{}", encoded.extension));
            std::fs::write(&path, &encoded.bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }

    let variants: Vec<_> = processed
        .iter()
        .map(|(name, encoded)| {
            serde_json::json!({
                "name": name,
                "width": encoded.width,
                "height": encoded.height,
                "bytes": encoded.bytes.len(),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "input": args.input.display().to_string(),
        "inputBytes": bytes.len(),
        "quality": args.quality,
        "sizes": args.sizes,
        "warmup": args.warmup,
        "runsMs": times,
        "medianMs": median_ms(&times),
        "cpuMs": cpu_times,
        "vmHwmKib": hwm,
        "variants": variants,
    }))
}

/// CPU time of every thread of this process so far, in nanoseconds, from the first field
/// of `/proc/self/task/*/schedstat` (`None` where that is not available). Threads that
/// already exited are not counted; the timed work starts none that outlive it.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("media_bench: {message}");
            ExitCode::FAILURE
        }
    }
}
