//! `airlock media process`: the media stage on one file, outside the pipeline — to see what
//! a policy would make of an image, and for the whole-process benchmark against
//! `vipsthumbnail`.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use airlock_media::{FileError, Fit, MediaError, MediaOptions, OutputFormat, VariantSpec};
use anyhow::{Context as _, bail};
use serde_json::json;

/// A variant as `name:size:format:quality`, e.g. `w1024:1024:jpeg:82`.
#[derive(Debug, Clone)]
pub struct VariantArg(pub VariantSpec);

impl FromStr for VariantArg {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let [name, size, format, quality] = parts.as_slice() else {
            return Err(format!(
                "{text:?}: expected name:size:format:quality, e.g. w1024:1024:jpeg:82"
            ));
        };
        let size: u32 = size
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("{text:?}: size {size:?} is not a positive whole number"))?;
        let format = match *format {
            "jpeg" | "jpg" => OutputFormat::Jpeg,
            "webp" => OutputFormat::WebP,
            "png" => OutputFormat::Png,
            other => {
                return Err(format!(
                    "{text:?}: format {other:?} is not jpeg, webp or png"
                ));
            }
        };
        let quality: u8 = quality
            .parse()
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| format!("{text:?}: quality {quality:?} is not 1 to 100"))?;
        if name.is_empty() || name.contains('/') {
            return Err(format!("{text:?}: the name must be non-empty, without '/'"));
        }
        Ok(Self(VariantSpec {
            name: (*name).to_owned(),
            size,
            fit: Fit::Contain,
            format,
            quality,
        }))
    }
}

/// Sanitize one image and make its variants, as the media stage would.
#[derive(Debug, Clone, clap::Args)]
pub struct MediaProcessArgs {
    /// The image.
    pub input: PathBuf,
    /// Where to write `original.*`, the variants (`{name}.{ext}`) and `metadata.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Variants as name:size:format:quality (default: w2048, w1024, w256 JPEG at 82).
    #[arg(long = "variant")]
    pub variants: Vec<VariantArg>,
    /// Only the variants: skip re-encoding the full-size original (the thumbnailing path).
    #[arg(long)]
    pub variants_only: bool,
    /// Re-encode quality of the sanitized original.
    #[arg(long, default_value_t = 90)]
    pub original_quality: u8,
    /// Skip computing the placeholder.
    #[arg(long)]
    pub no_placeholder: bool,
}

/// Exit status when the image is refused (its reason code is printed).
pub const EXIT_REFUSED: u8 = 4;

/// Runs it; prints the metadata as JSON. An input that cannot be read is an error, not a
/// refusal.
pub fn run(args: &MediaProcessArgs) -> anyhow::Result<u8> {
    let mut options = MediaOptions {
        original_quality: args.original_quality,
        placeholder: !args.no_placeholder,
        ..MediaOptions::default()
    };
    if !args.variants.is_empty() {
        options.variants = args.variants.iter().map(|v| v.0.clone()).collect();
    }
    // From the path, so a PNG is read as it is decoded and never held whole.
    let processed = if args.variants_only {
        airlock_media::process_variants_only_file(&args.input, &options)
            .map(|done| (None, done.variants, done.metadata))
    } else {
        airlock_media::process_file(&args.input, &options)
            .map(|done| (Some(done.original), done.variants, done.metadata))
    };
    let (original, variants, metadata) = match processed {
        Ok(done) => done,
        Err(FileError::Media(err)) => return refused(&err),
        Err(err @ FileError::Io { .. }) => return Err(err.into()),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut written = Vec::new();
    for (name, encoded) in original
        .iter()
        .map(|o| ("original", o))
        .chain(variants.iter().map(|(n, e)| (n.as_str(), e)))
    {
        let path = args.out.join(format!("{name}.{}", encoded.extension));
        std::fs::write(&path, &encoded.bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    let metadata = serde_json::to_value(&metadata)?;
    let path = args.out.join("metadata.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&metadata)?)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &json!({ "files": written, "metadata": metadata }))?;
    writeln!(out)?;
    Ok(0)
}

fn refused(err: &MediaError) -> anyhow::Result<u8> {
    if matches!(err, MediaError::TimedOut(_)) {
        bail!("{err}");
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(
        &mut out,
        &json!({ "refused": airlock_media::reason_for(err), "detail": err.to_string() }),
    )?;
    writeln!(out)?;
    Ok(EXIT_REFUSED)
}
