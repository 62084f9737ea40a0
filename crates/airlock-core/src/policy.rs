//! Upload policies per purpose: which content types, how large, whether media processing
//! applies. Loaded from a TOML file; a purpose's missing fields come from `[defaults]`.
//!
//! ```toml
//! [defaults]
//! max_size = "25 MiB"
//! intent_ttl_seconds = 900
//!
//! [purposes.avatar]
//! allowed_types = ["image/jpeg", "image/png", "image/gif", "image/webp"]
//! max_size = "10 MiB"
//! media = true
//!
//! [purposes.attachment]
//! allowed_types = ["application/zip", "application/pdf"]
//!
//! [purposes.attachment.archives]
//! max_members = 1000
//! max_total_size = "512 MiB"
//! max_depth = 2
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use airlock_archive::ArchivePolicy;

use crate::keys::Purpose;
use crate::media::{ColorHandling, ImageFormat, MediaPolicy, VariantFit, VariantPolicy};

/// The rules for one purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy {
    /// Allowed declared content types: exact (`image/png`) or a family (`image/*`).
    pub allowed_types: Vec<String>,
    /// Largest object accepted, in bytes.
    pub max_size: u64,
    /// The media stage's settings, when it applies to this purpose's images.
    pub media: Option<MediaPolicy>,
    /// How long an intent accepts its upload.
    pub intent_ttl_seconds: u64,
    /// What an archive or container (zip and OOXML/ODF, gzip, tar, 7z, ...) may hold to be
    /// promoted, judged by airlock itself after the scanner said clean.
    pub archives: ArchivePolicy,
}

impl UploadPolicy {
    /// Whether the policy allows this declared content type.
    #[must_use]
    pub fn allows(&self, content_type: &str) -> bool {
        let content_type = normalize_type(content_type);
        self.allowed_types.iter().any(|allowed| {
            allowed.strip_suffix("/*").map_or_else(
                || *allowed == content_type,
                |family| {
                    content_type
                        .split_once('/')
                        .is_some_and(|(ct_family, _)| ct_family == family)
                },
            )
        })
    }
}

/// A content type without parameters, lower-case, with common aliases folded.
#[must_use]
pub fn normalize_type(content_type: &str) -> String {
    let bare = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match bare.as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg".to_owned(),
        "image/x-png" => "image/png".to_owned(),
        _ => bare,
    }
}

/// The policies of every known purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    purposes: BTreeMap<String, UploadPolicy>,
}

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid policy file{}: {message}", path.as_ref().map(|p| format!(" {p}")).unwrap_or_default())]
    Invalid {
        path: Option<String>,
        message: String,
    },
}

const DEFAULT_MAX_SIZE: u64 = 25 * 1024 * 1024;
const DEFAULT_INTENT_TTL_SECONDS: u64 = 15 * 60;

/// The policies used when no file is given.
pub const BUILTIN_POLICIES: &str = r#"
[defaults]
max_size = "25 MiB"
intent_ttl_seconds = 900

[purposes.avatar]
allowed_types = ["image/jpeg", "image/png", "image/gif", "image/webp"]
max_size = "10 MiB"
media = true

[purposes.photo]
allowed_types = ["image/jpeg", "image/png", "image/gif", "image/webp"]
max_size = "50 MiB"
media = true

[purposes.document]
allowed_types = ["application/pdf", "text/plain", "text/csv", "application/json"]
max_size = "100 MiB"

[purposes.attachment]
allowed_types = ["image/*", "application/pdf", "text/plain", "text/csv", "application/json", "application/zip", "application/gzip", "application/x-tar", "application/x-7z-compressed"]
max_size = "1 GiB"
"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: RawPolicy,
    #[serde(default)]
    purposes: BTreeMap<String, RawPolicy>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    allowed_types: Option<Vec<String>>,
    max_size: Option<RawSize>,
    media: Option<RawMedia>,
    intent_ttl_seconds: Option<u64>,
    archives: Option<ArchivePolicy>,
}

/// `media = true`, `media = false`, or a `[purposes.x.media]` table.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawMedia {
    Enabled(bool),
    Settings(RawMediaSettings),
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct RawMediaSettings {
    max_pixels: Option<u64>,
    max_width: Option<u32>,
    max_height: Option<u32>,
    max_frames: Option<u32>,
    decode_timeout_seconds: Option<u64>,
    original_quality: Option<u8>,
    keep_original: Option<bool>,
    /// `convert-to-srgb` or `drop`.
    color: Option<String>,
    variants: Option<Vec<RawVariant>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: String,
    /// Long edge (for `fit = "contain"`).
    size: Option<u32>,
    /// `contain` (default) or `cover`.
    fit: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    /// `jpeg` (default), `webp` or `png`.
    format: Option<String>,
    quality: Option<u8>,
}

/// One variant of a media table, checked; `at` names it in errors.
fn variant_policy(v: &RawVariant, at: &str) -> Result<VariantPolicy, String> {
    let valid_name = !v.name.is_empty()
        && v.name.len() <= 32
        && v.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && v.name != "original";
    if !valid_name {
        return Err(format!(
            "{at}.name: {:?} must be 1 to 32 of a-z, 0-9, '-' (and not \"original\")",
            v.name
        ));
    }
    let fit = match v.fit.as_deref() {
        None | Some("contain") => VariantFit::Contain,
        Some("cover") => match (v.width, v.height) {
            (Some(w), Some(h)) if w > 0 && h > 0 => VariantFit::Cover {
                width: w,
                height: h,
            },
            _ => {
                return Err(format!(
                    "{at}: fit = \"cover\" needs width and height above zero"
                ));
            }
        },
        Some(other) => {
            return Err(format!(
                "{at}.fit: {other:?} is not \"contain\" or \"cover\""
            ));
        }
    };
    let size = match (fit, v.size) {
        (VariantFit::Contain, Some(s)) if s > 0 => s,
        (VariantFit::Contain, _) => return Err(format!("{at}.size must be above zero")),
        (VariantFit::Cover { width, height }, _) => width.max(height),
    };
    let format = match v.format.as_deref() {
        None | Some("jpeg") => ImageFormat::Jpeg,
        Some("webp") => ImageFormat::Webp,
        Some("png") => ImageFormat::Png,
        Some(other) => {
            return Err(format!("{at}.format: {other:?} is not jpeg, webp or png"));
        }
    };
    let quality = match v.quality {
        Some(q) if !(1..=100).contains(&q) => {
            return Err(format!("{at}.quality must be 1 to 100"));
        }
        Some(q) => q,
        None => 82,
    };
    Ok(VariantPolicy {
        name: v.name.clone(),
        size,
        fit,
        format,
        quality,
    })
}

fn media_policy(raw: &RawMediaSettings, at: &str) -> Result<MediaPolicy, String> {
    let defaults = MediaPolicy::default();
    let positive = |value: Option<u64>, name: &str, default: u64| -> Result<u64, String> {
        match value {
            Some(0) => Err(format!("{at}.{name} must be above zero")),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    };
    let quality = |value: Option<u8>, name: &str, default: u8| -> Result<u8, String> {
        match value {
            Some(q) if !(1..=100).contains(&q) => Err(format!("{at}.{name} must be 1 to 100")),
            Some(q) => Ok(q),
            None => Ok(default),
        }
    };
    let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let color = match raw.color.as_deref() {
        None | Some("convert-to-srgb") => ColorHandling::ConvertToSrgb,
        Some("drop") => ColorHandling::Drop,
        Some(other) => {
            return Err(format!(
                "{at}.color: {other:?} is not \"convert-to-srgb\" or \"drop\""
            ));
        }
    };
    let variants = match &raw.variants {
        None => defaults.variants.clone(),
        Some(list) => {
            let mut variants = Vec::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                let at = format!("{at}.variants[{i}]");
                if variants
                    .iter()
                    .any(|known: &VariantPolicy| known.name == v.name)
                {
                    return Err(format!("{at}.name: {:?} is used twice", v.name));
                }
                variants.push(variant_policy(v, &at)?);
            }
            variants
        }
    };
    Ok(MediaPolicy {
        max_pixels: positive(raw.max_pixels, "max_pixels", defaults.max_pixels)?,
        max_width: narrow(positive(
            raw.max_width.map(u64::from),
            "max_width",
            u64::from(defaults.max_width),
        )?),
        max_height: narrow(positive(
            raw.max_height.map(u64::from),
            "max_height",
            u64::from(defaults.max_height),
        )?),
        max_frames: narrow(positive(
            raw.max_frames.map(u64::from),
            "max_frames",
            u64::from(defaults.max_frames),
        )?),
        decode_timeout_seconds: positive(
            raw.decode_timeout_seconds,
            "decode_timeout_seconds",
            defaults.decode_timeout_seconds,
        )?,
        original_quality: quality(
            raw.original_quality,
            "original_quality",
            defaults.original_quality,
        )?,
        keep_original: raw.keep_original.unwrap_or(defaults.keep_original),
        color,
        variants,
    })
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

/// Parses `1048576`, `"512 KiB"`, `"10 MiB"`, `"1 GiB"`, `"2MB"` (decimal units are powers of
/// ten, binary units powers of two): the same sizes archive policies take.
pub fn parse_size(text: &str) -> Result<u64, String> {
    airlock_archive::size::parse(text)
}

impl RawSize {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            Self::Bytes(n) => Ok(*n),
            Self::Text(text) => parse_size(text),
        }
    }
}

impl Policies {
    /// The built-in policies (`avatar`, `photo`, `document`, `attachment`).
    #[must_use]
    pub fn builtin() -> Self {
        Self::from_toml(BUILTIN_POLICIES).expect("built-in policies are valid")
    }

    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|err| match err {
            PolicyError::Invalid { message, .. } => PolicyError::Invalid {
                path: Some(path.display().to_string()),
                message,
            },
            other @ PolicyError::Read { .. } => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            path: None,
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let default_max = match &raw.defaults.max_size {
            Some(size) => size
                .bytes()
                .map_err(|m| invalid(format!("defaults.max_size: {m}")))?,
            None => DEFAULT_MAX_SIZE,
        };
        if raw.purposes.is_empty() {
            return Err(invalid("no [purposes.<name>] section".to_owned()));
        }
        let mut purposes = BTreeMap::new();
        for (name, policy) in raw.purposes {
            Purpose::new(name.clone()).map_err(|e| invalid(format!("purposes.{name}: {e}")))?;
            let field = |f: &str| format!("purposes.{name}.{f}");
            let allowed_types = policy
                .allowed_types
                .or_else(|| raw.defaults.allowed_types.clone())
                .ok_or_else(|| {
                    invalid(format!(
                        "{} is missing (and [defaults] has none)",
                        field("allowed_types")
                    ))
                })?;
            if allowed_types.is_empty() {
                return Err(invalid(format!("{} is empty", field("allowed_types"))));
            }
            for content_type in &allowed_types {
                let valid = content_type
                    .split_once('/')
                    .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a != "*")
                    && *content_type == normalize_type(content_type);
                if !valid {
                    return Err(invalid(format!(
                        "{}: {content_type:?} is not a lower-case type/subtype (or type/*)",
                        field("allowed_types")
                    )));
                }
            }
            let max_size = match &policy.max_size {
                Some(size) => size
                    .bytes()
                    .map_err(|m| invalid(format!("{}: {m}", field("max_size"))))?,
                None => default_max,
            };
            if max_size == 0 {
                return Err(invalid(format!("{} must be above zero", field("max_size"))));
            }
            let intent_ttl_seconds = policy
                .intent_ttl_seconds
                .or(raw.defaults.intent_ttl_seconds)
                .unwrap_or(DEFAULT_INTENT_TTL_SECONDS);
            if intent_ttl_seconds == 0 {
                return Err(invalid(format!(
                    "{} must be above zero",
                    field("intent_ttl_seconds")
                )));
            }
            let media = match policy.media.as_ref().or(raw.defaults.media.as_ref()) {
                None | Some(RawMedia::Enabled(false)) => None,
                Some(RawMedia::Enabled(true)) => Some(MediaPolicy::default()),
                Some(RawMedia::Settings(settings)) => {
                    Some(media_policy(settings, &field("media")).map_err(invalid)?)
                }
            };
            purposes.insert(
                name,
                UploadPolicy {
                    allowed_types,
                    max_size,
                    media,
                    intent_ttl_seconds,
                    archives: policy
                        .archives
                        .or_else(|| raw.defaults.archives.clone())
                        .unwrap_or_default(),
                },
            );
        }
        Ok(Self { purposes })
    }

    #[must_use]
    pub fn get(&self, purpose: &Purpose) -> Option<&UploadPolicy> {
        self.purposes.get(purpose.as_str())
    }

    pub fn purposes(&self) -> impl Iterator<Item = (&str, &UploadPolicy)> {
        self.purposes.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_policies_come_from_the_purpose_or_the_defaults() {
        let policies = Policies::from_toml(
            r#"
[defaults.archives]
max_depth = 2

[purposes.attachment]
allowed_types = ["application/zip"]

[purposes.attachment.archives]
max_members = 10
max_total_size = "1 MiB"
formats = ["zip"]

[purposes.bundle]
allowed_types = ["application/zip"]
"#,
        )
        .unwrap();
        let attachment = &policies
            .get(&Purpose::new("attachment").unwrap())
            .unwrap()
            .archives;
        assert_eq!(attachment.max_members, 10);
        assert_eq!(attachment.max_total_size, 1 << 20);
        assert_eq!(attachment.formats, [airlock_archive::ArchiveFormat::Zip]);
        // A purpose's own table replaces the defaults' table whole.
        assert_eq!(attachment.max_depth, ArchivePolicy::default().max_depth);
        let bundle = &policies
            .get(&Purpose::new("bundle").unwrap())
            .unwrap()
            .archives;
        assert_eq!(bundle.max_depth, 2);
        assert_eq!(bundle.max_members, ArchivePolicy::default().max_members);

        let err = Policies::from_toml(
            "[purposes.a]\nallowed_types = [\"application/zip\"]\n[purposes.a.archives]\nmax_memberz = 1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_memberz"), "{err}");
    }

    #[test]
    fn builtin_policies_load() {
        let policies = Policies::builtin();
        let avatar = policies.get(&Purpose::new("avatar").unwrap()).unwrap();
        assert_eq!(avatar.max_size, 10 * 1024 * 1024);
        assert_eq!(avatar.media, Some(MediaPolicy::default()));
        assert!(avatar.allows("image/JPG"));
        assert!(!avatar.allows("application/pdf"));
        let attachment = policies.get(&Purpose::new("attachment").unwrap()).unwrap();
        assert!(attachment.allows("image/tiff"));
        assert!(!attachment.allows("imagex/tiff"));
        assert!(attachment.media.is_none());
        assert_eq!(attachment.intent_ttl_seconds, 900);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10 MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert_eq!(parse_size("17").unwrap(), 17);
        assert!(parse_size("ten MiB").unwrap_err().contains("whole number"));
        assert!(parse_size("10 mb").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn invalid_files_name_the_field() {
        for (text, expected) in [
            (
                "[purposes.a]\nallowed_types=[]\n",
                "purposes.a.allowed_types is empty",
            ),
            ("[purposes.a]\n", "purposes.a.allowed_types is missing"),
            (
                "[purposes.a]\nallowed_types=['image/png']\nmax_size='3 lb'\n",
                "purposes.a.max_size",
            ),
            (
                "[purposes.a]\nallowed_types=['Image/PNG']\n",
                "not a lower-case type/subtype",
            ),
            (
                "[purposes.A]\nallowed_types=['image/png']\n",
                "purposes.A: purpose",
            ),
            (
                "[purposes.a]\nallowed_types=['image/png']\nmaxsize=3\n",
                "unknown field `maxsize`",
            ),
            ("[defaults]\n", "no [purposes.<name>] section"),
        ] {
            let err = Policies::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn media_settings_parse_and_name_bad_fields() {
        let policies = Policies::from_toml(
            "[purposes.photo]\nallowed_types=['image/*']\n[purposes.photo.media]\nmax_pixels=1000\ncolor='drop'\nkeep_original=true\nvariants=[{name='thumb', fit='cover', width=64, height=64, format='webp', quality=70}, {name='w512', size=512}]\n",
        )
        .unwrap();
        let media = policies
            .get(&Purpose::new("photo").unwrap())
            .unwrap()
            .media
            .clone()
            .unwrap();
        assert_eq!(media.max_pixels, 1000);
        assert_eq!(media.color, ColorHandling::Drop);
        assert!(media.keep_original);
        assert_eq!(media.variants.len(), 2);
        assert_eq!(
            media.variants[0].fit,
            VariantFit::Cover {
                width: 64,
                height: 64
            }
        );
        assert_eq!(media.variants[0].format, ImageFormat::Webp);
        assert_eq!(media.variants[1].size, 512);
        assert_eq!(media.variants[1].quality, 82);
        for (table, expected) in [
            (
                "max_pixels=0",
                "purposes.p.media.max_pixels must be above zero",
            ),
            ("color='cmyk'", "purposes.p.media.color"),
            (
                "variants=[{name='a', size=0}]",
                "purposes.p.media.variants[0].size",
            ),
            (
                "variants=[{name='A', size=5}]",
                "purposes.p.media.variants[0].name",
            ),
            (
                "variants=[{name='a', size=5}, {name='a', size=6}]",
                "used twice",
            ),
            (
                "variants=[{name='a', fit='cover'}]",
                "needs width and height",
            ),
            (
                "variants=[{name='a', size=5, format='gif'}]",
                "variants[0].format",
            ),
            (
                "variants=[{name='a', size=5, quality=101}]",
                "quality must be 1 to 100",
            ),
            ("original_quality=0", "original_quality must be 1 to 100"),
        ] {
            let text =
                format!("[purposes.p]\nallowed_types=['image/png']\n[purposes.p.media]\n{table}\n");
            let err = Policies::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{table}: {err}");
        }
    }

    #[test]
    fn defaults_fill_missing_fields() {
        let policies = Policies::from_toml(
            "[defaults]\nallowed_types=['text/plain']\nmax_size=100\nmedia=true\n[purposes.notes]\n",
        )
        .unwrap();
        let notes = policies.get(&Purpose::new("notes").unwrap()).unwrap();
        assert_eq!(notes.allowed_types, vec!["text/plain"]);
        assert_eq!(notes.max_size, 100);
        assert!(notes.media.is_some());
    }
}
