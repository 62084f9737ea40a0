//! Small ICC profiles built byte by byte, so colour tests need no profile files.
//!
//! Shared by the integration tests and the `color` module's unit tests.
#![allow(dead_code, reason = "each user needs only some of the builders")]

/// D50, the profile connection space's white, as s15Fixed16 numbers.
const D50: [f64; 3] = [0.9642, 1.0, 0.8249];

fn s15_fixed16(value: f64) -> [u8; 4] {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "profile values are small and known"
    )]
    let fixed = (value * 65536.0).round() as i32;
    fixed.to_be_bytes()
}

fn xyz_tag(xyz: [f64; 3]) -> Vec<u8> {
    let mut out = b"XYZ \0\0\0\0".to_vec();
    for value in xyz {
        out.extend_from_slice(&s15_fixed16(value));
    }
    out
}

/// A version 2 `textDescriptionType`.
fn desc_tag(text: &str) -> Vec<u8> {
    let mut out = b"desc\0\0\0\0".to_vec();
    let ascii = [text.as_bytes(), b"\0"].concat();
    out.extend_from_slice(&u32::try_from(ascii.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&ascii);
    out.extend_from_slice(&[0; 8]); // no Unicode description
    out.extend_from_slice(&[0; 3]); // no ScriptCode description
    out.extend_from_slice(&[0; 67]);
    out
}

/// A `curveType` holding one gamma exponent as u8Fixed8.
fn gamma_curve(gamma_u8_fixed8: u16) -> Vec<u8> {
    let mut out = b"curv\0\0\0\0".to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&gamma_u8_fixed8.to_be_bytes());
    out
}

/// A whole version 2.1 profile: header, tag table, tags (each 4-byte aligned).
fn profile(class: [u8; 4], space: [u8; 4], pcs: [u8; 4], tags: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
    let table_len = 4 + 12 * tags.len();
    let mut offset = 128 + table_len;
    let mut table = u32::try_from(tags.len()).unwrap().to_be_bytes().to_vec();
    let mut data = Vec::new();
    for (signature, body) in tags {
        table.extend_from_slice(signature);
        table.extend_from_slice(&u32::try_from(offset).unwrap().to_be_bytes());
        table.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        let padded = body.len().next_multiple_of(4);
        data.extend_from_slice(body);
        data.resize(data.len() + padded - body.len(), 0);
        offset += padded;
    }
    let mut header = vec![0u8; 128];
    header[0..4].copy_from_slice(&u32::try_from(offset).unwrap().to_be_bytes());
    header[8..12].copy_from_slice(&[2, 0x10, 0, 0]);
    header[12..16].copy_from_slice(&class);
    header[16..20].copy_from_slice(&space);
    header[20..24].copy_from_slice(&pcs);
    header[24..36].copy_from_slice(&[0x07, 0xE8, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]); // 2024-01-01
    header[36..40].copy_from_slice(b"acsp");
    header[64..68].copy_from_slice(&1u32.to_be_bytes()); // relative colorimetric
    for (i, value) in D50.iter().enumerate() {
        header[68 + 4 * i..72 + 4 * i].copy_from_slice(&s15_fixed16(*value));
    }
    [header, table, data].concat()
}

/// A monochrome display profile whose PCS is Lab: `kTRC` is a pure gamma curve
/// (u8Fixed8 exponent) giving L* / 100.
pub fn gray_lab(gamma_u8_fixed8: u16) -> Vec<u8> {
    profile(
        *b"mntr",
        *b"GRAY",
        *b"Lab ",
        &[
            (*b"desc", desc_tag("Gray Lab test")),
            (*b"wtpt", xyz_tag(D50)),
            (*b"kTRC", gamma_curve(gamma_u8_fixed8)),
        ],
    )
}

/// How dark each ink makes the paper in [`cmyk_lab`]: L* is 100 times the product of
/// `1 - DARKENING[i] * ink[i]` at the table's corners (inks 0 or 1), and a* = b* = 0.
pub const CMYK_DARKENING: [f64; 4] = [0.3, 0.3, 0.1, 0.75];

/// L* at the corner of [`cmyk_lab`]'s table for inks 0 or 1.
pub fn cmyk_corner_lightness(inks: [bool; 4]) -> f64 {
    (0..4)
        .map(|i| {
            if inks[i] {
                1.0 - CMYK_DARKENING[i]
            } else {
                1.0
            }
        })
        .product::<f64>()
        * 100.0
}

/// An output (printer) profile from CMYK to a Lab PCS: one `lut16Type` `A2B0` with
/// identity curves and a 2-point grid whose corners are [`cmyk_corner_lightness`] and
/// neutral. Along any one ink's edge the lightness is therefore linear in the ink.
pub fn cmyk_lab() -> Vec<u8> {
    let mut lut = b"mft2\0\0\0\0".to_vec();
    lut.extend_from_slice(&[4, 3, 2, 0]);
    for row in 0..3 {
        for column in 0..3 {
            lut.extend_from_slice(&s15_fixed16(if row == column { 1.0 } else { 0.0 }));
        }
    }
    lut.extend_from_slice(&2u16.to_be_bytes()); // input table entries
    lut.extend_from_slice(&2u16.to_be_bytes()); // output table entries
    for _ in 0..4 {
        lut.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    }
    // Grid order: the first input channel varies slowest.
    for index in 0..16u8 {
        let inks = [3, 2, 1, 0].map(|bit| index >> bit & 1 == 1);
        let lightness = cmyk_corner_lightness(inks);
        // lut16 Lab: L* 0-100 as 0-0xFF00, a* and b* 0 as 0x8000.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "0-100 scaled into u16"
        )]
        let l = (lightness * 652.8).round() as u16;
        for value in [l, 0x8000, 0x8000] {
            lut.extend_from_slice(&value.to_be_bytes());
        }
    }
    for _ in 0..3 {
        lut.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    }
    profile(
        *b"prtr",
        *b"CMYK",
        *b"Lab ",
        &[
            (*b"desc", desc_tag("CMYK Lab test")),
            (*b"wtpt", xyz_tag(D50)),
            (*b"A2B0", lut),
        ],
    )
}

/// CIE lightness to relative luminance.
pub fn lightness_to_y(lightness: f64) -> f64 {
    let f = (lightness + 16.0) / 116.0;
    if f > 6.0 / 29.0 {
        f * f * f
    } else {
        lightness * 27.0 / 24_389.0
    }
}

/// Relative luminance to an 8-bit sRGB sample.
pub fn srgb_sample(y: f64) -> f64 {
    let y = y.clamp(0.0, 1.0);
    let encoded = if y <= 0.003_130_8 {
        y * 12.92
    } else {
        1.055 * y.powf(1.0 / 2.4) - 0.055
    };
    encoded * 255.0
}
