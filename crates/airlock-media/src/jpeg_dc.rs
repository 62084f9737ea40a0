//! Progressive JPEGs at 1/8 scale from their DC coefficients alone.
//!
//! At 1/8 scale each 8x8 block becomes one pixel, and the inverse DCT of a block reduced to
//! one sample is its DC coefficient (`dc * q / 8 + 128`): libjpeg's 1/8 scaling uses
//! nothing else. A progressive file sends the DC coefficients of the whole image in their
//! own scans, first of all (T.81 G.1.1), so the AC scans — nearly all of the file and of a
//! full decoder's work — are skipped by looking for the next marker, and no coefficient
//! buffer beyond one number per block is ever held. This is what makes a small variant of a
//! large progressive photograph cheap.
//!
//! Only the common case is handled: 8-bit Huffman-coded progressive frames (SOF2) of one
//! (grey) or three (YCbCr) components with integer sampling ratios. Anything else, and any
//! inconsistency, gives `None`, and the caller decodes with the full decoder, which is the
//! reference for every feature and every error.

use crate::MediaError;
use crate::decode::Deadline;
use crate::header::skip_entropy_coded_data;
use crate::raster::{Channels, Raster};

/// One component of the frame.
#[derive(Debug, Clone)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant_table: usize,
    /// DC quantizer, latched at the component's first scan (as libjpeg does).
    dc_quant: Option<i32>,
    /// Blocks across and down the padded plane (whole MCUs).
    stride: usize,
    rows: usize,
    /// Blocks that hold image samples (a non-interleaved scan covers only these).
    width_blocks: usize,
    height_blocks: usize,
    /// DC coefficient of every block, point-transformed values already shifted back.
    dc: Vec<i32>,
    /// Some DC scan covered this component.
    seen: bool,
}

struct Frame {
    width: usize,
    height: usize,
    components: Vec<Component>,
    mcus_across: usize,
    mcus_down: usize,
    max_h: usize,
    max_v: usize,
}

/// A DC Huffman table in the form of T.81 F.2.2.3's decoder.
#[derive(Debug, Clone)]
struct DcTable {
    max_code: [i32; 17],
    value_offset: [i32; 17],
    values: Vec<u8>,
}

impl DcTable {
    fn new(bits: &[u8], values: &[u8]) -> Self {
        let mut max_code = [-1i32; 17];
        let mut value_offset = [0i32; 17];
        let (mut code, mut k) = (0i32, 0i32);
        for length in 1..=16 {
            let count = i32::from(bits[length - 1]);
            value_offset[length] = k - code;
            code += count;
            k += count;
            if count > 0 {
                max_code[length] = code - 1;
            }
            code <<= 1;
        }
        Self {
            max_code,
            value_offset,
            values: values.to_vec(),
        }
    }

    fn decode(&self, bits: &mut BitReader<'_>) -> Option<u8> {
        let mut code = 0i32;
        for length in 1..=16 {
            code = (code << 1) | i32::from(bits.bit());
            if code <= self.max_code[length] {
                let index = usize::try_from(code + self.value_offset[length]).ok()?;
                return self.values.get(index).copied();
            }
        }
        None
    }
}

/// Entropy-coded bits, with stuffed zero bytes removed. Past a marker it reads zeros (as
/// libjpeg does for damaged data); the work is bounded by the block count either way.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    accumulator: u64,
    count: u32,
    at_marker: bool,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Self {
            data,
            pos,
            accumulator: 0,
            count: 0,
            at_marker: false,
        }
    }

    fn fill(&mut self) {
        while self.count <= 56 {
            let mut byte = 0u8;
            if !self.at_marker {
                match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
                    (Some(0xFF), Some(0x00)) => {
                        byte = 0xFF;
                        self.pos += 2;
                    }
                    (Some(0xFF) | None, _) => self.at_marker = true,
                    (Some(&b), _) => {
                        byte = b;
                        self.pos += 1;
                    }
                }
            }
            self.accumulator |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    fn bit(&mut self) -> u8 {
        self.bits(1).try_into().unwrap_or(0)
    }

    /// The next `n` (at most 16) bits.
    fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if self.count < n {
            self.fill();
        }
        #[allow(clippy::cast_possible_truncation)]
        let value = (self.accumulator >> (64 - n)) as u32;
        self.accumulator <<= n;
        self.count -= n;
        value
    }

    /// Drops the bits left of the interval and steps over its `RSTn` marker.
    fn restart(&mut self) -> Option<()> {
        self.accumulator = 0;
        self.count = 0;
        self.at_marker = false;
        // Fill bytes may precede the marker.
        while self.data.get(self.pos) == Some(&0xFF) && self.data.get(self.pos + 1) == Some(&0xFF) {
            self.pos += 1;
        }
        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
            (Some(0xFF), Some(0xD0..=0xD7)) => {
                self.pos += 2;
                Some(())
            }
            _ => None,
        }
    }
}

/// `receive` and `extend` of T.81 F.2.2.1: the difference coded in `size` bits.
fn extend(bits: &mut BitReader<'_>, size: u8) -> i32 {
    if size == 0 {
        return 0;
    }
    let size = u32::from(size.min(16));
    let value = i32::try_from(bits.bits(size)).unwrap_or(0);
    if value < 1 << (size - 1) {
        value - (1 << size) + 1
    } else {
        value
    }
}

fn be16(bytes: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *bytes.get(at)?,
        *bytes.get(at + 1)?,
    ])))
}

/// Decodes `bytes` at 1/8 scale (`ceil(width / 8)` x `ceil(height / 8)`) if it is a
/// progressive JPEG this module handles; `Ok(None)` otherwise. Colour comes out as YCbCr
/// with `keep_ycbcr`, else RGB.
pub(crate) fn decode_eighth(
    bytes: &[u8],
    keep_ycbcr: bool,
    deadline: &Deadline,
) -> Result<Option<Raster>, MediaError> {
    let Some(frame) = read_dc(bytes, deadline)? else {
        return Ok(None);
    };
    let Some(raster) = render(&frame) else {
        return Ok(None);
    };
    Ok(Some(if keep_ycbcr {
        raster
    } else {
        raster.to_rgb().unwrap_or(raster)
    }))
}

/// Walks the file: tables and frame from their segments, DC scans decoded, AC scans
/// skipped.
fn read_dc(bytes: &[u8], deadline: &Deadline) -> Result<Option<Frame>, MediaError> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Ok(None);
    }
    let mut dc_quant = [None::<i32>; 4];
    let mut tables: [Option<DcTable>; 4] = [None, None, None, None];
    let mut frame: Option<Frame> = None;
    let mut restart_interval = 0usize;
    let mut pos = 2;
    loop {
        // Fill bytes may precede any marker.
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if bytes.get(pos) != Some(&0xFF) {
            return Ok(None);
        }
        let Some(&marker) = bytes.get(pos + 1) else {
            return Ok(None);
        };
        if marker == 0xD9 {
            break;
        }
        let Some(length) = be16(bytes, pos + 2) else {
            return Ok(None);
        };
        let (start, end) = (pos + 4, pos + 2 + length);
        let Some(body) = bytes.get(start..end).filter(|_| length >= 2) else {
            return Ok(None);
        };
        pos = end;
        match marker {
            0xC2 => {
                if frame.is_some() {
                    return Ok(None);
                }
                let Some(parsed) = parse_frame(body) else {
                    return Ok(None);
                };
                frame = Some(parsed);
            }
            // Any other frame type (baseline, lossless, arithmetic, hierarchical).
            0xC0 | 0xC1 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
            0xC4 if parse_dht(body, &mut tables).is_none() => return Ok(None),
            0xDB if parse_dqt(body, &mut dc_quant).is_none() => return Ok(None),
            0xDD => {
                let Some(interval) = be16(body, 0) else {
                    return Ok(None);
                };
                restart_interval = interval;
            }
            // Adobe: its transform flag may say the three components are RGB.
            0xEE if body.starts_with(b"Adobe") && body.get(11) != Some(&1) => return Ok(None),
            0xDA => {
                let Some(frame) = frame.as_mut() else {
                    return Ok(None);
                };
                deadline.check()?;
                let Some(scan) = parse_scan(body, frame) else {
                    return Ok(None);
                };
                if scan.spectral_start == 0 {
                    let decoded = decode_dc_scan(
                        bytes,
                        pos,
                        frame,
                        &scan,
                        &tables,
                        &dc_quant,
                        restart_interval,
                    );
                    if decoded.is_none() {
                        return Ok(None);
                    }
                }
                pos = skip_entropy_coded_data(bytes, pos);
            }
            _ => {}
        }
    }
    Ok(frame.filter(|f| f.components.iter().all(|c| c.seen)))
}

fn parse_frame(body: &[u8]) -> Option<Frame> {
    if *body.first()? != 8 {
        return None;
    }
    let height = be16(body, 1)?;
    let width = be16(body, 3)?;
    let count = usize::from(*body.get(5)?);
    if width == 0 || height == 0 || !(count == 1 || count == 3) {
        return None;
    }
    let mut components = Vec::with_capacity(count);
    for c in body.get(6..6 + 3 * count)?.chunks_exact(3) {
        let (h, v) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
            return None;
        }
        components.push(Component {
            id: c[0],
            h,
            v,
            quant_table: usize::from(c[2]),
            dc_quant: None,
            stride: 0,
            rows: 0,
            width_blocks: 0,
            height_blocks: 0,
            dc: Vec::new(),
            seen: false,
        });
    }
    if count == 3 && components.iter().map(|c| c.id).eq(*b"RGB") {
        return None;
    }
    if count == 1 {
        // A single component is one block per MCU whatever its factors say.
        components[0].h = 1;
        components[0].v = 1;
    }
    let max_h = components.iter().map(|c| c.h).max()?;
    let max_v = components.iter().map(|c| c.v).max()?;
    if components
        .iter()
        .any(|c| max_h % c.h != 0 || max_v % c.v != 0)
    {
        return None;
    }
    let mcus_across = width.div_ceil(8 * max_h);
    let mcus_down = height.div_ceil(8 * max_v);
    for c in &mut components {
        c.stride = mcus_across * c.h;
        c.rows = mcus_down * c.v;
        c.width_blocks = (width * c.h).div_ceil(max_h).div_ceil(8);
        c.height_blocks = (height * c.v).div_ceil(max_v).div_ceil(8);
        c.dc = vec![0; c.stride * c.rows];
    }
    Some(Frame {
        width,
        height,
        components,
        mcus_across,
        mcus_down,
        max_h,
        max_v,
    })
}

fn parse_dht(mut body: &[u8], tables: &mut [Option<DcTable>; 4]) -> Option<()> {
    while !body.is_empty() {
        let class_and_id = body[0];
        let bits = body.get(1..17)?;
        let count: usize = bits.iter().map(|&b| usize::from(b)).sum();
        let values = body.get(17..17 + count)?;
        let id = usize::from(class_and_id & 15);
        if id > 3 || count > 256 {
            return None;
        }
        if class_and_id >> 4 == 0 {
            tables[id] = Some(DcTable::new(bits, values));
        }
        body = &body[17 + count..];
    }
    Some(())
}

fn parse_dqt(mut body: &[u8], dc_quant: &mut [Option<i32>; 4]) -> Option<()> {
    while !body.is_empty() {
        let precision_and_id = body[0];
        let id = usize::from(precision_and_id & 15);
        let wide = precision_and_id >> 4 != 0;
        let size = if wide { 128 } else { 64 };
        let table = body.get(1..1 + size)?;
        if id > 3 {
            return None;
        }
        let q = if wide {
            i32::from(u16::from_be_bytes([table[0], table[1]]))
        } else {
            i32::from(table[0])
        };
        dc_quant[id] = Some(q);
        body = &body[1 + size..];
    }
    Some(())
}

struct Scan {
    /// Frame component index and DC table of each scan component.
    components: Vec<(usize, usize)>,
    spectral_start: u8,
    high: u8,
    low: u8,
}

fn parse_scan(body: &[u8], frame: &Frame) -> Option<Scan> {
    let count = usize::from(*body.first()?);
    if count == 0 || count > frame.components.len() {
        return None;
    }
    let selectors = body.get(1..1 + 2 * count)?;
    let mut components = Vec::with_capacity(count);
    for s in selectors.chunks_exact(2) {
        let index = frame.components.iter().position(|c| c.id == s[0])?;
        components.push((index, usize::from(s[1] >> 4) & 3));
    }
    let tail = body.get(1 + 2 * count..4 + 2 * count)?;
    let (spectral_start, spectral_end) = (tail[0], tail[1]);
    let (high, low) = (tail[2] >> 4, tail[2] & 15);
    if spectral_start == 0 && spectral_end != 0 || low > 13 {
        return None;
    }
    Some(Scan {
        components,
        spectral_start,
        high,
        low,
    })
}

/// Decodes one DC scan (first pass or refinement) starting at `pos`.
fn decode_dc_scan(
    bytes: &[u8],
    pos: usize,
    frame: &mut Frame,
    scan: &Scan,
    tables: &[Option<DcTable>; 4],
    dc_quant: &[Option<i32>; 4],
    restart_interval: usize,
) -> Option<()> {
    for &(index, table) in &scan.components {
        let component = &mut frame.components[index];
        if scan.high == 0 && tables[table].is_none() {
            return None;
        }
        if component.dc_quant.is_none() {
            component.dc_quant = Some(dc_quant[component.quant_table]?);
        }
        component.seen = true;
    }
    let mut bits = BitReader::new(bytes, pos);
    let mut predictors = [0i32; 3];
    let mut mcus = 0usize;
    // Before each MCU: a restart marker when one is due, which also resets predictions.
    let mut restart_due = |bits: &mut BitReader<'_>, predictors: &mut [i32; 3]| {
        if restart_interval > 0 && mcus > 0 && mcus.is_multiple_of(restart_interval) {
            bits.restart()?;
            *predictors = [0; 3];
        }
        mcus += 1;
        Some(())
    };
    let first = scan.high == 0;
    let low = scan.low;
    // One block: a difference from the component's predictor, or one refinement bit.
    let block = |bits: &mut BitReader<'_>,
                 predictor: &mut i32,
                 table: Option<&DcTable>,
                 coefficient: &mut i32|
     -> Option<()> {
        if first {
            let size = table?.decode(bits)?;
            if size > 11 {
                return None;
            }
            *predictor += extend(bits, size);
            *coefficient = *predictor << low;
        } else if bits.bit() == 1 {
            *coefficient |= 1 << low;
        }
        Some(())
    };
    if let [(index, table)] = scan.components[..] {
        // Non-interleaved: the component's own blocks in raster order, one per MCU.
        let component = &mut frame.components[index];
        for row in 0..component.height_blocks {
            for column in 0..component.width_blocks {
                restart_due(&mut bits, &mut predictors)?;
                let coefficient = component.dc.get_mut(row * component.stride + column)?;
                block(
                    &mut bits,
                    &mut predictors[0],
                    tables[table].as_ref(),
                    coefficient,
                )?;
            }
        }
    } else {
        for mcu_row in 0..frame.mcus_down {
            for mcu_column in 0..frame.mcus_across {
                restart_due(&mut bits, &mut predictors)?;
                for (slot, &(index, table)) in scan.components.iter().enumerate() {
                    let component = &mut frame.components[index];
                    let (h, v, stride) = (component.h, component.v, component.stride);
                    for y in 0..v {
                        for x in 0..h {
                            let at = (mcu_row * v + y) * stride + mcu_column * h + x;
                            let coefficient = component.dc.get_mut(at)?;
                            let predictor = predictors.get_mut(slot)?;
                            block(&mut bits, predictor, tables[table].as_ref(), coefficient)?;
                        }
                    }
                }
            }
        }
    }
    Some(())
}

/// The image at 1/8 scale from the DC coefficients: grey, or YCbCr with chroma brought
/// to full size by linear interpolation between sample centres (libjpeg's "fancy"
/// upsampling for 2x).
fn render(frame: &Frame) -> Option<Raster> {
    let (width, height) = (frame.width.div_ceil(8), frame.height.div_ceil(8));
    let planes: Vec<Vec<u8>> = frame
        .components
        .iter()
        .map(|c| {
            let q = c.dc_quant.unwrap_or(1);
            let samples: Vec<u8> = (0..c.height_blocks)
                .flat_map(|row| &c.dc[row * c.stride..row * c.stride + c.width_blocks])
                .map(|&dc| {
                    let value = ((dc * q + 4) >> 3) + 128;
                    u8::try_from(value.clamp(0, 255)).unwrap_or(0)
                })
                .collect();
            upsample(
                &samples,
                (c.width_blocks, c.height_blocks),
                (frame.max_h / c.h, frame.max_v / c.v),
                (width, height),
            )
        })
        .collect();
    let (w, h) = (u32::try_from(width).ok()?, u32::try_from(height).ok()?);
    if let [gray] = planes.as_slice() {
        return Some(Raster::new(w, h, Channels::Gray, gray.clone()));
    }
    let [y, cb, cr] = planes.as_slice() else {
        return None;
    };
    let pixels = y
        .iter()
        .zip(cb)
        .zip(cr)
        .flat_map(|((&y, &cb), &cr)| [y, cb, cr])
        .collect();
    Some(Raster::new(w, h, Channels::YCbCr, pixels))
}

/// A plane of `size` samples, subsampled by `factor`, as exactly `out` samples.
fn upsample(
    plane: &[u8],
    size: (usize, usize),
    factor: (usize, usize),
    out: (usize, usize),
) -> Vec<u8> {
    if factor == (1, 1) && size == out {
        return plane.to_vec();
    }
    // Source position (in samples) and weight of the upper neighbour for each output
    // index along one axis.
    let taps = |factor: usize, len: usize, out: usize| -> Vec<(usize, usize, f32)> {
        #[allow(clippy::cast_precision_loss)]
        (0..out)
            .map(|i| {
                let centre = ((i as f32 + 0.5) / factor as f32 - 0.5).max(0.0);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let low = (centre as usize).min(len - 1);
                let high = (low + 1).min(len - 1);
                (low, high, centre - low as f32)
            })
            .collect()
    };
    let columns = taps(factor.0, size.0, out.0);
    let rows = taps(factor.1, size.1, out.1);
    let mut result = Vec::with_capacity(out.0 * out.1);
    for &(top, bottom, wy) in &rows {
        let (upper, lower) = (&plane[top * size.0..], &plane[bottom * size.0..]);
        for &(left, right, wx) in &columns {
            let mix = |row: &[u8]| f32::from(row[left]) * (1.0 - wx) + f32::from(row[right]) * wx;
            let value = mix(upper) * (1.0 - wy) + mix(lower) * wy;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            result.push((value + 0.5).clamp(0.0, 255.0) as u8);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Progressive files of libjpeg-turbo's `cjpeg -progressive` (its default scan script:
    /// interleaved DC scans with successive approximation), 203x114.
    const FIXTURES: [(&str, &[u8]); 3] = [
        (
            "4:2:0, a restart every MCU row",
            include_bytes!("../tests/fixtures/progressive-420.jpg"),
        ),
        (
            "4:2:2",
            include_bytes!("../tests/fixtures/progressive-422.jpg"),
        ),
        (
            "grey",
            include_bytes!("../tests/fixtures/progressive-gray.jpg"),
        ),
    ];

    fn deadline() -> Deadline {
        Deadline::new(Duration::from_secs(30))
    }

    /// The full decode (every scan, full-size IDCT) of jpeg-decoder, averaged over each
    /// 8x8 block (clipped at the edges): what the 1/8-scale image stands for.
    fn full_decode_block_means(bytes: &[u8]) -> (usize, usize, usize, Vec<u8>) {
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        let pixels = decoder.decode().unwrap();
        let info = decoder.info().unwrap();
        let (width, height) = (usize::from(info.width), usize::from(info.height));
        let samples = pixels.len() / (width * height);
        let (w8, h8) = (width.div_ceil(8), height.div_ceil(8));
        let mut means = Vec::with_capacity(w8 * h8 * samples);
        for by in 0..h8 {
            for bx in 0..w8 {
                for s in 0..samples {
                    let (mut sum, mut count) = (0u32, 0u32);
                    for y in by * 8..(by * 8 + 8).min(height) {
                        for x in bx * 8..(bx * 8 + 8).min(width) {
                            sum += u32::from(pixels[(y * width + x) * samples + s]);
                            count += 1;
                        }
                    }
                    means.push(u8::try_from((sum + count / 2) / count).unwrap());
                }
            }
        }
        (w8, h8, samples, means)
    }

    fn check_against_full_decode(what: &str, bytes: &[u8]) {
        let (w8, h8, samples, means) = full_decode_block_means(bytes);
        let raster = decode_eighth(bytes, false, &deadline())
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: not decoded"));
        assert_eq!(
            (raster.width as usize, raster.height as usize),
            (w8, h8),
            "{what}"
        );
        assert_eq!(raster.channels.count(), samples, "{what}");
        // Grey is the block mean itself, up to the DC's quantization and rounding; colour
        // also has chroma interpolated from blocks twice as large, which on a detailed
        // photograph moves it by a few levels.
        let difference = crate::jpeg_baseline::tests::mean_error(&raster.pixels, &means);
        let bound = if samples == 1 { 0.75 } else { 5.0 };
        assert!(difference < bound, "{what}: mean difference {difference}");
        // jpeg-decoder's own 1/8 scaling (which decodes every scan) gives the same grey and,
        // with its own chroma upsampling, nearly the same colour.
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        decoder.read_info().unwrap();
        let info = decoder.info().unwrap();
        decoder
            .scale(info.width.div_ceil(8), info.height.div_ceil(8))
            .unwrap();
        let scaled = decoder.decode().unwrap();
        let difference = crate::jpeg_baseline::tests::mean_error(&raster.pixels, &scaled);
        let bound = if samples == 1 { 0.01 } else { 1.5 };
        assert!(
            difference < bound,
            "{what}: {difference} from jpeg-decoder at 1/8"
        );
        // YCbCr out when asked, the same image.
        let ycbcr = decode_eighth(bytes, true, &deadline()).unwrap().unwrap();
        let expected = if samples == 3 {
            Channels::YCbCr
        } else {
            Channels::Gray
        };
        assert_eq!(ycbcr.channels, expected, "{what}");
        assert_eq!(
            ycbcr.to_rgb().unwrap_or(ycbcr).pixels,
            raster.pixels,
            "{what}"
        );
    }

    #[test]
    fn dc_scans_give_the_block_means_of_the_full_decode() {
        for (what, bytes) in FIXTURES {
            check_against_full_decode(what, bytes);
        }
    }

    #[test]
    fn non_interleaved_dc_scans_and_restarts_decode_too() {
        // jpeg-encoder sends one DC scan per component, no successive approximation.
        let (width, height) = (171u16, 93u16);
        let rgb: Vec<u8> = (0..usize::from(width) * usize::from(height))
            .flat_map(|i| {
                let (x, y) = (i % usize::from(width), i / usize::from(width));
                [
                    u8::try_from(x * 255 / 171).unwrap(),
                    u8::try_from(y * 255 / 93).unwrap(),
                    u8::try_from((x + y) % 97 + 80).unwrap(),
                ]
            })
            .collect();
        for (restart, sampling) in [
            (0, jpeg_encoder::SamplingFactor::F_2_2),
            (3, jpeg_encoder::SamplingFactor::F_2_2),
            (1, jpeg_encoder::SamplingFactor::F_1_1),
            (5, jpeg_encoder::SamplingFactor::F_2_1),
        ] {
            let mut out = Vec::new();
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, 85);
            encoder.set_progressive(true);
            encoder.set_sampling_factor(sampling);
            if restart > 0 {
                encoder.set_restart_interval(restart);
            }
            encoder
                .encode(&rgb, width, height, jpeg_encoder::ColorType::Rgb)
                .unwrap();
            check_against_full_decode(&format!("restart {restart} {sampling:?}"), &out);
        }
    }

    /// `pixels` (grey or RGB) resized in one Lanczos3 pass by the `image` crate.
    fn lanczos(pixels: Vec<u8>, from: (u32, u32), to: (u32, u32)) -> Vec<u8> {
        use image::imageops::{Lanczos3, resize};
        if pixels.len() == (from.0 * from.1) as usize {
            let image = image::GrayImage::from_raw(from.0, from.1, pixels).unwrap();
            resize(&image, to.0, to.1, Lanczos3).into_raw()
        } else {
            let image = image::RgbImage::from_raw(from.0, from.1, pixels).unwrap();
            resize(&image, to.0, to.1, Lanczos3).into_raw()
        }
    }

    /// jpeg-decoder's decode of every scan, at `eighths` / 8 scale.
    fn full_decoder(bytes: &[u8], eighths: u16) -> (Vec<u8>, (u32, u32)) {
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        decoder.read_info().unwrap();
        let info = decoder.info().unwrap();
        if eighths < 8 {
            let scaled = |len: u16| (len * eighths).div_ceil(8);
            decoder
                .scale(scaled(info.width), scaled(info.height))
                .unwrap();
        }
        let pixels = decoder.decode().unwrap();
        let info = decoder.info().unwrap();
        (pixels, (u32::from(info.width), u32::from(info.height)))
    }

    #[test]
    fn a_small_variant_matches_the_full_decode_path() {
        use crate::{MediaOptions, VariantSpec, process_variants_only};
        for (what, bytes) in FIXTURES {
            // 203x114 to 24 px wide: the 1/8 scale (26x15) is still large enough.
            let options = MediaOptions {
                variants: vec![VariantSpec::jpeg_contain(24, 95)],
                placeholder: false,
                ..MediaOptions::default()
            };
            let processed = process_variants_only(bytes, &options).unwrap();
            let variant = &processed.variants[0].1;
            let size = (variant.width, variant.height);
            let ours = jpeg_decoder::Decoder::new(variant.bytes.as_slice())
                .decode()
                .unwrap();
            // The same variant from jpeg-decoder's decode of every scan, with its 1/8
            // IDCT (the path progressive files took before), and at full scale.
            let (eighth, eighth_size) = full_decoder(bytes, 1);
            let (full, full_size) = full_decoder(bytes, 8);
            let via_eighth = lanczos(eighth, eighth_size, size);
            let via_full = lanczos(full, full_size, size);
            let from_eighth = crate::jpeg_baseline::tests::mean_error(&ours, &via_eighth);
            assert!(
                from_eighth < 3.0,
                "{what}: {from_eighth} from the 1/8 IDCT path"
            );
            // Any 1/8 shrink-on-load moves a 24 px variant of a detailed photograph by
            // several levels from a resize of the full image; this one no further.
            let scaling_error = crate::jpeg_baseline::tests::mean_error(&via_eighth, &via_full);
            let from_full = crate::jpeg_baseline::tests::mean_error(&ours, &via_full);
            assert!(
                from_full < scaling_error + 1.0,
                "{what}: {from_full} from the full decode (1/8 IDCT: {scaling_error})"
            );
        }
    }

    #[test]
    fn anything_else_is_left_to_the_full_decoder() {
        let (_, progressive) = FIXTURES[0];
        // Cut short: the DC refinement scan near the end is missing.
        let cut = &progressive[..progressive.len() * 2 / 3];
        assert!(decode_eighth(cut, true, &deadline()).unwrap().is_none());
        // Baseline.
        let mut baseline = Vec::new();
        jpeg_encoder::Encoder::new(&mut baseline, 80)
            .encode(&[128; 16 * 16 * 3], 16, 16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        assert!(
            decode_eighth(&baseline, true, &deadline())
                .unwrap()
                .is_none()
        );
        // Not a JPEG, or damaged right after SOI.
        assert!(
            decode_eighth(b"GIF89a", true, &deadline())
                .unwrap()
                .is_none()
        );
        let mut damaged = progressive.to_vec();
        damaged[3] ^= 0xFF;
        damaged[2] = 0x00;
        assert!(
            decode_eighth(&damaged, true, &deadline())
                .unwrap()
                .is_none()
        );
        // Out of time.
        let spent = Deadline::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
        assert!(matches!(
            decode_eighth(progressive, true, &spent),
            Err(MediaError::TimedOut(_))
        ));
    }
}
