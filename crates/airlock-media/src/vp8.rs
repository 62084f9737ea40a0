//! How hard a lossy WebP was compressed: the quantizer indices in its VP8 frame header
//! (RFC 6386, section 9.6), mapped back to the libwebp quality that produces them, so a
//! lossy original is re-encoded at about the quality it came in with instead of growing.
//!
//! libwebp turns a quality `Q` (0-100) into a base quantizer index `q` (0-127) as
//! `q = 127 * (1 - cbrt(l))`, where `l = Q/100 * 2/3` below `Q = 75` and `2 * Q/100 - 1`
//! from there (`QualityToCompression` in its `quant_enc.c`); [`quality_for_quantizer`]
//! inverts that: `c = 1 - q/127`, `l = c^3`, `Q = 1.5 l` when `l < 0.5`, else
//! `(l + 1) / 2`. Its spatial noise shaping then moves each of the four segments' index
//! around the base (`c_i = c^(1 - k * alpha_i)`, the `alpha_i` centred on their
//! pixel-weighted mean), so no single index in the header is the base, and the weights
//! would need every macroblock header. Inverting the plain mean of the four indices
//! errs high (the coarse segments cover fewer pixels), up to 15 points around `Q = 40`;
//! inverting the coarsest index errs low by about as much. [`estimate`] takes the
//! midpoint of the two, which on libwebp's own output lands within a few points of the
//! quality used across 5-100 (the unit test below measures it). Other VP8 encoders use
//! the same 0-127 index scale, so the estimate means "a libwebp quality of about the
//! same quantization" for them too.

use crate::header::WebpQuality;
/// The boolean entropy decoder of RFC 6386 section 7, enough to read header fields.
struct BoolReader<'a> {
    data: &'a [u8],
    pos: usize,
    value: u32,
    range: u32,
    bits: u32,
}

impl<'a> BoolReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        let byte = |i: usize| u32::from(data.get(i).copied().unwrap_or(0));
        Self {
            data,
            pos: 2,
            value: (byte(0) << 8) | byte(1),
            range: 255,
            bits: 0,
        }
    }

    fn bool(&mut self, probability: u32) -> bool {
        let split = 1 + (((self.range - 1) * probability) >> 8);
        let big_split = split << 8;
        let bit = if self.value >= big_split {
            self.range -= split;
            self.value -= big_split;
            true
        } else {
            self.range = split;
            false
        };
        while self.range < 128 {
            self.value <<= 1;
            self.range <<= 1;
            self.bits += 1;
            if self.bits == 8 {
                self.bits = 0;
                if let Some(&byte) = self.data.get(self.pos) {
                    self.value |= u32::from(byte);
                }
                self.pos += 1;
            }
        }
        bit
    }

    fn flag(&mut self) -> bool {
        self.bool(128)
    }

    fn literal(&mut self, bits: u32) -> u32 {
        (0..bits).fold(0, |value, _| (value << 1) | u32::from(self.flag()))
    }

    fn signed(&mut self, bits: u32) -> i32 {
        let magnitude = i32::try_from(self.literal(bits)).unwrap_or(0);
        if self.flag() { -magnitude } else { magnitude }
    }

    /// An optional signed field: a flag, then `bits` of magnitude and a sign.
    fn optional_signed(&mut self, bits: u32) -> i32 {
        if self.flag() { self.signed(bits) } else { 0 }
    }

    /// The header is over when the reader ran past the first partition.
    fn overran(&self) -> bool {
        self.pos > self.data.len() + 2
    }
}

/// The mean AC luma quantizer index (0-127) of a VP8 key frame's segments; `None` when
/// the data is not a key frame or too short to hold its header.
pub(crate) fn mean_quantizer(vp8: &[u8]) -> Option<f64> {
    quantizers(vp8).map(|q| q.iter().sum::<f64>() / 4.0)
}

/// The AC luma quantizer index of each of a VP8 key frame's four segments (all the same
/// without segmentation).
fn quantizers(vp8: &[u8]) -> Option<[f64; 4]> {
    let tag =
        u32::from(*vp8.first()?) | (u32::from(*vp8.get(1)?) << 8) | (u32::from(*vp8.get(2)?) << 16);
    let key_frame = tag & 1 == 0;
    if !key_frame || vp8.get(3..6)? != [0x9D, 0x01, 0x2A] {
        return None;
    }
    let first_partition = usize::try_from(tag >> 5).ok()?;
    let partition = vp8.get(10..)?;
    let partition = &partition[..first_partition.min(partition.len())];
    let mut reader = BoolReader::new(partition);
    reader.literal(2); // colour space, clamping type
    let mut segments: Option<(bool, [i32; 4])> = None;
    if reader.flag() {
        let update_map = reader.flag();
        if reader.flag() {
            let absolute = reader.flag();
            let mut quant = [0i32; 4];
            for value in &mut quant {
                *value = reader.optional_signed(7);
            }
            for _ in 0..4 {
                reader.optional_signed(6); // loop filter level per segment
            }
            segments = Some((absolute, quant));
        }
        if update_map {
            for _ in 0..3 {
                if reader.flag() {
                    reader.literal(8);
                }
            }
        }
    }
    reader.literal(1 + 6 + 3); // filter type, level, sharpness
    if reader.flag() && reader.flag() {
        for _ in 0..8 {
            reader.optional_signed(6); // reference frame and mode loop-filter deltas
        }
    }
    reader.literal(2); // DCT partitions
    let base = i32::try_from(reader.literal(7)).ok()?;
    if reader.overran() {
        return None;
    }
    let index = |q: i32| f64::from(q.clamp(0, 127));
    Some(match segments {
        Some((true, quant)) => quant.map(index),
        Some((false, quant)) => quant.map(|q| index(base + q)),
        None => [index(base); 4],
    })
}

/// The largest AC luma quantizer index (0-127) of a VP8 key frame's segments: its
/// coarsest quantization.
pub(crate) fn coarsest_quantizer(vp8: &[u8]) -> Option<f64> {
    quantizers(vp8).map(|q| q.into_iter().fold(0.0, f64::max))
}

/// The estimated libwebp quality from a frame's mean and coarsest quantizer indices
/// (averaged over frames for an animation); see the module notes.
pub(crate) fn estimate(mean: f64, coarsest: f64) -> WebpQuality {
    let from_mean = quality_for_quantizer(mean);
    let from_coarsest = quality_for_quantizer(coarsest);
    WebpQuality {
        estimate: from_mean.midpoint(from_coarsest),
        coarsest: from_coarsest,
    }
}

/// The libwebp quality (1-100) that quantizes at `index` (see the module notes).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn quality_for_quantizer(index: f64) -> u8 {
    let compression = 1.0 - index.clamp(0.0, 127.0) / 127.0;
    let linear = compression.powi(3);
    let quality = if linear < 0.5 {
        linear * 1.5
    } else {
        f64::midpoint(linear, 1.0)
    };
    (quality * 100.0).round().clamp(1.0, 100.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy_rgb(width: u32, height: u32) -> Vec<u8> {
        (0..width * height * 3)
            .map(|i| {
                let (x, y) = ((i / 3) % width, i / 3 / width);
                u8::try_from((x * 5 + y * 3 + (i % 3) * 70 + (x * y) % 37 + (x ^ y) % 23) % 256)
                    .unwrap()
            })
            .collect()
    }

    /// The VP8 bitstream of a simple (non-extended) lossy WebP file.
    fn bitstream(file: &[u8]) -> &[u8] {
        assert_eq!(&file[12..16], b"VP8 ");
        &file[20..]
    }

    #[test]
    fn estimates_libwebp_quality_from_its_own_output() {
        let (width, height) = (160, 120);
        let pixels = noisy_rgb(width, height);
        let mut previous = 0;
        for quality in [5u8, 10, 20, 30, 40, 50, 60, 70, 75, 82, 90, 95, 100] {
            let file =
                libwebp::WebPEncodeRGB(&pixels, width, height, width * 3, f32::from(quality))
                    .unwrap();
            let vp8 = bitstream(&file);
            let index = mean_quantizer(vp8).expect("a key frame header");
            let estimate = estimate(index, coarsest_quantizer(vp8).unwrap()).estimate;
            assert!(
                estimate.abs_diff(quality) <= 4,
                "quality {quality}: mean index {index}, estimated {estimate}"
            );
            assert!(estimate >= previous, "estimates rise with the quality");
            previous = estimate;
        }
    }

    #[test]
    fn mapping_inverts_libwebps_formula() {
        // libwebp: quality 75 -> l = 0.5 -> q = 127 * (1 - cbrt(0.5)) = 26.2.
        assert_eq!(quality_for_quantizer(127.0 * (1.0 - 0.5f64.cbrt())), 75);
        assert_eq!(quality_for_quantizer(0.0), 100);
        assert_eq!(quality_for_quantizer(127.0), 1);
    }

    #[test]
    fn not_a_key_frame_header() {
        assert_eq!(mean_quantizer(&[]), None);
        assert_eq!(
            mean_quantizer(&[1, 0, 0, 0x9D, 0x01, 0x2A, 1, 0, 1, 0, 0]),
            None
        );
        assert_eq!(mean_quantizer(&[0, 0, 0, 1, 2, 3, 1, 0, 1, 0, 0]), None);
    }
}
