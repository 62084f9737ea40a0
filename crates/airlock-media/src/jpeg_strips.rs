//! Baseline JPEGs decoded one MCU row at a time straight into a resize: the full-size
//! image is never held.
//!
//! When no full-size original is wanted and the largest variant needs the whole
//! resolution (less than a 2x shrink, so no DCT scaling applies), decoding the whole image
//! first costs a buffer of width x height x 3 bytes written once and read once: on a
//! 12-megapixel photograph 36 MB, whose first-touch page faults alone are a tenth of the
//! job. Here each MCU row (8 or 16 image rows) is entropy-decoded, dequantized and
//! inverse-transformed into a strip per component, chroma is upsampled one image row at a
//! time, and the interleaved rows go to a
//! [`RowResizer`], which keeps only the window of rows its next output strip reads (a few
//! hundred rows). Colour is never converted to RGB: the result is the largest variant as
//! YCbCr (or grey), as the JPEG encoder wants it.
//!
//! Only the common case is handled: 8-bit Huffman-coded sequential frames (SOF0/SOF1) of
//! one (grey) or three (YCbCr) components, chroma at most halved each way, in one scan.
//! Anything else, and any inconsistency or damage (a missing restart marker, an invalid
//! code, data that ends early), gives `None`, and the caller decodes the file the usual
//! way, which is the reference for every feature and every error.
//!
//! The inverse DCT is libjpeg's floating-point one (`jidctflt.c`, the AAN algorithm), so
//! samples match libjpeg's and zune-jpeg's to within a level or two; it works on eight
//! columns (then eight rows) at once so that it vectorises. Chroma is upsampled as libjpeg
//! does ("fancy": a triangle filter), with the last sample of a row repeated at the edge.

use crate::MediaError;
use crate::decode::Deadline;
use crate::raster::{Channels, Raster};
use crate::resize::{Resampler, RowResizer};

/// Natural (row-major) position of each zig-zag index.
const ZIGZAG_TO_NATURAL: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Bits of the look-up tables that decode most Huffman codes in one step.
const LOOKUP_BITS: u32 = 9;

/// Output rows per resize call: the window of source rows this needs (about 400 rows of
/// a 4000-wide plane) is still a fraction of the image, and the filter weights, which each
/// call computes again, are computed a few times instead of a few dozen.
const STRIP_ROWS: u32 = 192;

/// MCU rows decoded between deadline checks.
const MCU_ROWS_PER_CHECK: usize = 8;

/// A Huffman table: a look-up of the first [`LOOKUP_BITS`] bits for short codes, and
/// T.81 F.2.2.3's `max_code` / `value_offset` for the rest.
#[derive(Clone)]
struct HuffmanTable {
    /// `length << 8 | symbol` for codes of at most `LOOKUP_BITS` bits, 0 otherwise.
    lookup: Vec<u16>,
    /// For AC tables: `value << 8 | run << 4 | bits` when a code and the magnitude bits
    /// after it fit in `LOOKUP_BITS` bits together and the value in an `i8`; 0 otherwise.
    fast_ac: Vec<i16>,
    max_code: [i32; 17],
    value_offset: [i32; 17],
    values: Vec<u8>,
}

impl HuffmanTable {
    fn new(bits: &[u8], values: &[u8]) -> Option<Self> {
        let mut max_code = [-1i32; 17];
        let mut value_offset = [0i32; 17];
        let mut lookup = vec![0u16; 1 << LOOKUP_BITS];
        let (mut code, mut k) = (0i32, 0usize);
        for length in 1..=16u32 {
            let count = usize::from(bits[length as usize - 1]);
            value_offset[length as usize] = i32::try_from(k).ok()? - code;
            for i in 0..count {
                let symbol = *values.get(k + i)?;
                let this = u32::try_from(code).ok()? + u32::try_from(i).ok()?;
                if this >= 1 << length {
                    // More codes than the length has room for.
                    return None;
                }
                if length <= LOOKUP_BITS {
                    let shift = LOOKUP_BITS - length;
                    let first = (this << shift) as usize;
                    let entry = u16::try_from(length).ok()? << 8 | u16::from(symbol);
                    lookup[first..first + (1 << shift)].fill(entry);
                }
            }
            code += i32::try_from(count).ok()?;
            k += count;
            if count > 0 {
                max_code[length as usize] = code - 1;
            }
            code <<= 1;
        }
        let mut table = Self {
            lookup,
            fast_ac: vec![0; 1 << LOOKUP_BITS],
            max_code,
            value_offset,
            values: values.to_vec(),
        };
        table.fill_fast_ac();
        Some(table)
    }

    fn fill_fast_ac(&mut self) {
        for (index, fast) in self.fast_ac.iter_mut().enumerate() {
            let entry = self.lookup[index];
            let length = u32::from(entry >> 8);
            if length == 0 {
                continue;
            }
            let symbol = entry & 0xFF;
            let (run, size) = (u32::from(symbol >> 4), u32::from(symbol & 15));
            if size == 0 || length + size > LOOKUP_BITS {
                continue;
            }
            #[allow(clippy::cast_possible_truncation)]
            let raw = ((index as u32) << length & ((1 << LOOKUP_BITS) - 1)) >> (LOOKUP_BITS - size);
            let value = extend(raw, size);
            if let Ok(value) = i8::try_from(value) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
                {
                    *fast = i16::from(value) << 8 | ((run << 4) | (length + size)) as i16;
                }
            }
        }
    }

    /// The next symbol; `None` for a code the table does not have.
    #[inline]
    fn decode(&self, bits: &mut BitReader<'_>) -> Option<u8> {
        bits.ensure();
        let entry = self.lookup[bits.peek(LOOKUP_BITS) as usize];
        if entry != 0 {
            bits.consume(u32::from(entry >> 8));
            #[allow(clippy::cast_possible_truncation)]
            return Some(entry as u8);
        }
        let peek = i32::try_from(bits.peek(16)).ok()?;
        for length in LOOKUP_BITS + 1..=16 {
            let code = peek >> (16 - length);
            if code <= self.max_code[length as usize] {
                bits.consume(length);
                let index = usize::try_from(code + self.value_offset[length as usize]).ok()?;
                return self.values.get(index).copied();
            }
        }
        None
    }
}

/// `extend` of T.81 F.2.2.1: `raw`, `size` bits, as the signed value it codes.
#[inline]
fn extend(raw: u32, size: u32) -> i32 {
    let value = i32::try_from(raw).unwrap_or(0);
    if size == 0 {
        0
    } else if value < 1 << (size - 1) {
        value - (1 << size) + 1
    } else {
        value
    }
}

/// Entropy-coded bits, MSB first, with stuffed zero bytes removed. At a marker it reads
/// zeros and counts them, so that a scan using bits that are not there is caught.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    accumulator: u64,
    count: u32,
    at_marker: bool,
    /// Zero bits supplied past a marker or the end of the data.
    padding: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Self {
            data,
            pos,
            accumulator: 0,
            count: 0,
            at_marker: false,
            padding: 0,
        }
    }

    /// At least 32 bits in the accumulator.
    #[inline]
    fn ensure(&mut self) {
        if self.count < 32 {
            self.refill();
        }
    }

    fn refill(&mut self) {
        // Four bytes at once when none of them is 0xFF (no stuffing, no marker).
        if self.count <= 32
            && let Some(&[a, b, c, d]) = self.data.get(self.pos..self.pos + 4)
        {
            let word = u32::from_be_bytes([a, b, c, d]);
            if (!word).wrapping_sub(0x0101_0101) & word & 0x8080_8080 == 0 {
                self.accumulator |= u64::from(word) << (32 - self.count);
                self.pos += 4;
                self.count += 32;
                return;
            }
        }
        while self.count <= 56 {
            let mut byte = 0u8;
            if self.at_marker {
                self.padding += 8;
            } else {
                match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
                    (Some(0xFF), Some(0x00)) => {
                        byte = 0xFF;
                        self.pos += 2;
                    }
                    (Some(0xFF) | None, _) => {
                        self.at_marker = true;
                        self.padding += 8;
                    }
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

    /// The next `n` (1 to 32) bits, not consumed.
    #[inline]
    fn peek(&self, n: u32) -> u32 {
        #[allow(clippy::cast_possible_truncation)]
        let bits = (self.accumulator >> (64 - n)) as u32;
        bits
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        self.accumulator <<= n;
        self.count = self.count.saturating_sub(n);
    }

    /// The next `size` bits as the signed value they code (after an `ensure`).
    #[inline]
    fn receive_extend(&mut self, size: u32) -> i32 {
        if size == 0 {
            return 0;
        }
        let raw = self.peek(size);
        self.consume(size);
        extend(raw, size)
    }

    /// Whether the scan so far used only bits that were in the data.
    fn intact(&self) -> bool {
        self.count >= self.padding
    }

    /// Drops what is left of the interval and steps over its `RSTn` marker.
    fn restart(&mut self) -> Option<()> {
        if !self.intact() {
            return None;
        }
        self.accumulator = 0;
        self.count = 0;
        self.padding = 0;
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

/// One component of the frame and its strip of decoded samples.
struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant_table: usize,
    dc_table: usize,
    ac_table: usize,
    /// Dequantization factors in zig-zag order (latched at the scan): the quantizer times
    /// the inverse DCT's scale for the coefficient's row and column, over 8.
    quant: [f32; 64],
    predictor: i32,
    /// Samples across and down the plane that hold the image.
    width: usize,
    height: usize,
    /// One MCU row of samples: `stride` x `8 v`.
    stride: usize,
    strip: Vec<u8>,
}

struct Frame {
    width: usize,
    height: usize,
    components: Vec<Component>,
    max_h: usize,
    max_v: usize,
    mcus_across: usize,
    mcus_down: usize,
}

fn be16(bytes: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *bytes.get(at)?,
        *bytes.get(at + 1)?,
    ])))
}

/// Everything the scan needs, read from the segments before it.
struct Setup {
    frame: Frame,
    dc_tables: [Option<HuffmanTable>; 4],
    ac_tables: [Option<HuffmanTable>; 4],
    restart_interval: usize,
    /// Where the entropy-coded data starts.
    scan_start: usize,
}

/// Walks the segments up to the first scan; `None` if the file is not of the kind this
/// module decodes.
fn read_setup(bytes: &[u8]) -> Option<Setup> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut quant: [Option<[i32; 64]>; 4] = [None; 4];
    let mut dc_tables: [Option<HuffmanTable>; 4] = [None, None, None, None];
    let mut ac_tables: [Option<HuffmanTable>; 4] = [None, None, None, None];
    let mut frame: Option<Frame> = None;
    let mut restart_interval = 0;
    let mut pos = 2;
    loop {
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if bytes.get(pos) != Some(&0xFF) {
            return None;
        }
        let marker = *bytes.get(pos + 1)?;
        let length = be16(bytes, pos + 2)?;
        if length < 2 {
            return None;
        }
        let body = bytes.get(pos + 4..pos + 2 + length)?;
        pos += 2 + length;
        match marker {
            0xC0 | 0xC1 if frame.is_none() => frame = Some(parse_frame(body)?),
            // A second frame, or any other kind (progressive, lossless, arithmetic,
            // hierarchical); or SOI, EOI, RSTn before the scan.
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xD0..=0xD9 => {
                return None;
            }
            0xC4 => parse_dht(body, &mut dc_tables, &mut ac_tables)?,
            0xDB => parse_dqt(body, &mut quant)?,
            0xDD => restart_interval = be16(body, 0)?,
            // Adobe: its transform flag may say the three components are RGB.
            0xEE if body.starts_with(b"Adobe") && body.get(11) != Some(&1) => return None,
            0xDA => {
                let mut frame = frame?;
                parse_scan(body, &mut frame, &quant)?;
                return Some(Setup {
                    frame,
                    dc_tables,
                    ac_tables,
                    restart_interval,
                    scan_start: pos,
                });
            }
            _ => {}
        }
    }
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
        if components.iter().any(|other: &Component| other.id == c[0]) {
            return None;
        }
        components.push(Component {
            id: c[0],
            h,
            v,
            quant_table: usize::from(c[2]),
            dc_table: 0,
            ac_table: 0,
            quant: [0.0; 64],
            predictor: 0,
            width: 0,
            height: 0,
            stride: 0,
            strip: Vec::new(),
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
        c.width = (width * c.h).div_ceil(max_h);
        c.height = (height * c.v).div_ceil(max_v);
        c.stride = mcus_across * c.h * 8;
        c.strip = vec![0; c.stride * c.v * 8];
    }
    Some(Frame {
        width,
        height,
        components,
        max_h,
        max_v,
        mcus_across,
        mcus_down,
    })
}

fn parse_dht(
    mut body: &[u8],
    dc_tables: &mut [Option<HuffmanTable>; 4],
    ac_tables: &mut [Option<HuffmanTable>; 4],
) -> Option<()> {
    while !body.is_empty() {
        let class_and_id = body[0];
        let bits = body.get(1..17)?;
        let count: usize = bits.iter().map(|&b| usize::from(b)).sum();
        let values = body.get(17..17 + count)?;
        let id = usize::from(class_and_id & 15);
        if id > 3 || count > 256 {
            return None;
        }
        let table = HuffmanTable::new(bits, values)?;
        match class_and_id >> 4 {
            0 => dc_tables[id] = Some(table),
            1 => ac_tables[id] = Some(table),
            _ => return None,
        }
        body = &body[17 + count..];
    }
    Some(())
}

fn parse_dqt(mut body: &[u8], quant: &mut [Option<[i32; 64]>; 4]) -> Option<()> {
    while !body.is_empty() {
        let precision_and_id = body[0];
        let id = usize::from(precision_and_id & 15);
        let wide = precision_and_id >> 4 != 0;
        let size = if wide { 128 } else { 64 };
        let table = body.get(1..1 + size)?;
        if id > 3 || precision_and_id >> 4 > 1 {
            return None;
        }
        let mut values = [0i32; 64];
        for (k, value) in values.iter_mut().enumerate() {
            *value = if wide {
                i32::from(u16::from_be_bytes([table[2 * k], table[2 * k + 1]]))
            } else {
                i32::from(table[k])
            };
        }
        quant[id] = Some(values);
        body = &body[1 + size..];
    }
    Some(())
}

/// Checks the scan covers every component, interleaved, with full spectral selection,
/// and latches each component's tables.
fn parse_scan(body: &[u8], frame: &mut Frame, quant: &[Option<[i32; 64]>; 4]) -> Option<()> {
    let count = usize::from(*body.first()?);
    if count != frame.components.len() {
        return None;
    }
    let selectors = body.get(1..1 + 2 * count)?;
    for (index, s) in selectors.chunks_exact(2).enumerate() {
        // Scan components come in frame order (T.81 B.2.3).
        let component = frame.components.get_mut(index)?;
        if component.id != s[0] {
            return None;
        }
        component.dc_table = usize::from(s[1] >> 4);
        component.ac_table = usize::from(s[1] & 15);
        if component.dc_table > 3 || component.ac_table > 3 {
            return None;
        }
        let table = quant[component.quant_table]?;
        for (k, factor) in component.quant.iter_mut().enumerate() {
            let natural = ZIGZAG_TO_NATURAL[k];
            #[allow(clippy::cast_precision_loss)]
            let q = table[k] as f32;
            *factor = q * AAN_SCALE[natural / 8] * AAN_SCALE[natural % 8] / 8.0;
        }
    }
    let tail = body.get(1 + 2 * count..4 + 2 * count)?;
    (tail == [0, 63, 0]).then_some(())
}

/// Decodes one block's coefficients, dequantized, into `block` (natural order, which must
/// be zeros on entry). Returns whether any AC coefficient is non-zero.
#[inline]
fn decode_block(
    bits: &mut BitReader<'_>,
    dc: &HuffmanTable,
    ac: &HuffmanTable,
    component: &mut Component,
    block: &mut [f32; 64],
) -> Option<bool> {
    let size = u32::from(dc.decode(bits)?);
    if size > 11 {
        return None;
    }
    let diff = bits.receive_extend(size);
    component.predictor = component.predictor.wrapping_add(diff);
    #[allow(clippy::cast_precision_loss)]
    let dc = component.predictor as f32;
    block[0] = dc * component.quant[0];
    let mut any_ac = false;
    let mut k = 1usize;
    while k < 64 {
        bits.ensure();
        let fast = ac.fast_ac[bits.peek(LOOKUP_BITS) as usize];
        if fast != 0 {
            k += usize::from((fast >> 4 & 15).unsigned_abs());
            bits.consume(u32::from((fast & 15).unsigned_abs()));
            if k > 63 {
                return None;
            }
            let value = f32::from(fast >> 8);
            block[ZIGZAG_TO_NATURAL[k]] = value * component.quant[k];
            any_ac = true;
            k += 1;
            continue;
        }
        let symbol = ac.decode(bits)?;
        let (run, size) = (usize::from(symbol >> 4), u32::from(symbol & 15));
        if size == 0 {
            if run == 15 {
                k += 16;
                continue;
            }
            break;
        }
        k += run;
        if k > 63 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let value = bits.receive_extend(size) as f32;
        block[ZIGZAG_TO_NATURAL[k]] = value * component.quant[k];
        any_ac = true;
        k += 1;
    }
    Some(any_ac)
}

/// `cos(k pi / 16) sqrt(2)` (1 for k = 0): the scale of the AAN transform's outputs,
/// folded into the dequantization.
const AAN_SCALE: [f32; 8] = [
    1.0,
    1.387_039_8,
    1.306_563,
    1.175_875_6,
    1.0,
    0.785_695,
    0.541_196_1,
    0.275_899_38,
];

/// Eight lanes of `f32`, one per column (or row) of a block: each arithmetic operation
/// works on all eight, which the compiler vectorises.
type Row = [f32; 8];

#[inline]
fn lanes(f: impl Fn(usize) -> f32) -> Row {
    std::array::from_fn(f)
}

/// One 1-D pass of libjpeg's floating-point inverse DCT (`jidctflt.c`, the AAN
/// algorithm) over eight columns at once: `input[u]` holds the (scaled) coefficients of
/// frequency `u` of each column; the result holds the samples of each.
#[inline]
fn idct_pass(input: &[Row; 8]) -> [Row; 8] {
    let add = |a: &Row, b: &Row| lanes(|i| a[i] + b[i]);
    let sub = |a: &Row, b: &Row| lanes(|i| a[i] - b[i]);
    let mul = |a: &Row, k: f32| lanes(|i| a[i] * k);
    // Even part.
    let tmp10 = add(&input[0], &input[4]);
    let tmp11 = sub(&input[0], &input[4]);
    let tmp13 = add(&input[2], &input[6]);
    let tmp12 = sub(
        &mul(&sub(&input[2], &input[6]), std::f32::consts::SQRT_2),
        &tmp13,
    );
    let e0 = add(&tmp10, &tmp13);
    let e3 = sub(&tmp10, &tmp13);
    let e1 = add(&tmp11, &tmp12);
    let e2 = sub(&tmp11, &tmp12);
    // Odd part.
    let z13 = add(&input[5], &input[3]);
    let z10 = sub(&input[5], &input[3]);
    let z11 = add(&input[1], &input[7]);
    let z12 = sub(&input[1], &input[7]);
    let o7 = add(&z11, &z13);
    let tmp11 = mul(&sub(&z11, &z13), std::f32::consts::SQRT_2);
    let z5 = mul(&add(&z10, &z12), 1.847_759);
    let tmp10 = sub(&z5, &mul(&z12, 1.082_392_2));
    let tmp12 = sub(&z5, &mul(&z10, 2.613_126));
    let o6 = sub(&tmp12, &o7);
    let o5 = sub(&tmp11, &o6);
    let o4 = sub(&tmp10, &o5);
    [
        add(&e0, &o7),
        add(&e1, &o6),
        add(&e2, &o5),
        add(&e3, &o4),
        sub(&e3, &o4),
        sub(&e2, &o5),
        sub(&e1, &o6),
        sub(&e0, &o7),
    ]
}

fn transpose(rows: &[Row; 8]) -> [Row; 8] {
    std::array::from_fn(|x| std::array::from_fn(|y| rows[y][x]))
}

/// 1.5 x 2^23: added to a float of magnitude below 2^22, it leaves the value rounded to
/// an integer in the low mantissa bits, read with a plain bit cast (no saturating
/// conversion, so the loops over eight lanes vectorise).
const ROUNDING_BIAS: f32 = 12_582_912.0;
#[allow(clippy::cast_possible_wrap)]
const ROUNDING_BIAS_BITS: i32 = ROUNDING_BIAS.to_bits() as i32;

/// Samples from the transform's outputs: level-shifted, rounded and clamped.
#[inline]
fn samples(values: &Row) -> [u8; 8] {
    let ints: [i32; 8] = std::array::from_fn(|i| {
        // Clamped first, so the rounding trick's range holds for any input.
        let value = (values[i] + 128.0).clamp(0.0, 255.0) + ROUNDING_BIAS;
        #[allow(clippy::cast_possible_wrap)]
        let bits = value.to_bits() as i32;
        bits - ROUNDING_BIAS_BITS
    });
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    std::array::from_fn(|i| ints[i] as u8)
}

/// Inverse DCT of a dequantized, scaled block (natural order) into 8x8 samples at `out`,
/// rows `stride` apart.
fn idct(block: &[f32; 64], out: &mut [u8], stride: usize) {
    let rows: [Row; 8] = std::array::from_fn(|u| std::array::from_fn(|x| block[u * 8 + x]));
    // Columns: rows[u][x] is frequency u of column x; pass1[y][x] is row y of column x,
    // still frequencies across.
    let pass1 = idct_pass(&rows);
    // pass2[x][y]: the sample at column x of row y, stored column by column.
    let pass2 = idct_pass(&transpose(&pass1));
    for (x, column) in pass2.iter().enumerate() {
        for (y, sample) in samples(column).into_iter().enumerate() {
            out[y * stride + x] = sample;
        }
    }
}

/// A block with no AC coefficients is flat: its (scaled) DC value everywhere.
fn flat_block(dc: f32, out: &mut [u8], stride: usize) {
    let value = samples(&[dc; 8])[0];
    for y in 0..8 {
        out[y * stride..y * stride + 8].fill(value);
    }
}

/// Decodes `bytes` straight into a resize to `size` if it is a baseline JPEG this module
/// handles; `Ok(None)` otherwise (or when it turns out damaged), so the caller decodes it
/// the usual way. Colour comes out as YCbCr, grey as grey.
pub(crate) fn decode_resized(
    bytes: &[u8],
    size: (u32, u32),
    resampler: &mut Resampler,
    deadline: &Deadline,
) -> Result<Option<Raster>, MediaError> {
    let Some(setup) = read_setup(bytes) else {
        return Ok(None);
    };
    let Setup {
        mut frame,
        dc_tables,
        ac_tables,
        restart_interval,
        scan_start,
    } = setup;
    // Every table the scan uses must be there, and chroma at most halved each way (the
    // upsampling below); anything else is rare enough to leave to the full decoder.
    for c in &frame.components {
        if dc_tables[c.dc_table].is_none() || ac_tables[c.ac_table].is_none() {
            return Ok(None);
        }
        if frame.max_h / c.h > 2 || frame.max_v / c.v > 2 {
            return Ok(None);
        }
    }
    let (Ok(width), Ok(height)) = (u32::try_from(frame.width), u32::try_from(frame.height)) else {
        return Ok(None);
    };
    if size.0 > width || size.1 > height {
        return Ok(None);
    }
    let channels = if frame.components.len() == 1 {
        Channels::Gray
    } else {
        Channels::YCbCr
    };
    let mut resizer = RowResizer::new(resampler, (width, height), channels, size.0, size.1)
        .with_strip_rows(STRIP_ROWS);
    let mut upsampler = Upsampler::new(&frame);

    let mut bits = BitReader::new(bytes, scan_start);
    let mut block = [0f32; 64];
    let mut mcus = 0usize;
    for mcu_row in 0..frame.mcus_down {
        if mcu_row.is_multiple_of(MCU_ROWS_PER_CHECK) {
            deadline.check()?;
        }
        for mcu_column in 0..frame.mcus_across {
            if restart_interval > 0 && mcus > 0 && mcus.is_multiple_of(restart_interval) {
                if bits.restart().is_none() {
                    return Ok(None);
                }
                for c in &mut frame.components {
                    c.predictor = 0;
                }
            }
            mcus += 1;
            for c in &mut frame.components {
                let (Some(dc), Some(ac)) = (&dc_tables[c.dc_table], &ac_tables[c.ac_table]) else {
                    return Ok(None);
                };
                for y in 0..c.v {
                    for x in 0..c.h {
                        block.fill(0.0);
                        let Some(any_ac) = decode_block(&mut bits, dc, ac, c, &mut block) else {
                            return Ok(None);
                        };
                        let at = y * 8 * c.stride + (mcu_column * c.h + x) * 8;
                        let out = &mut c.strip[at..];
                        if any_ac {
                            idct(&block, out, c.stride);
                        } else {
                            flat_block(block[0], out, c.stride);
                        }
                    }
                }
            }
        }
        upsampler.push_strip(&mut frame, &mut resizer)?;
    }
    if !bits.intact() {
        return Ok(None);
    }
    upsampler.finish(&frame, &mut resizer)?;
    resizer.finish().map(Some)
}

/// Turns MCU rows of component strips into interleaved image rows for the resizer, one
/// MCU row behind the decoding: chroma halved vertically is interpolated between the
/// two nearest chroma rows (libjpeg's "fancy" upsampling, a triangle filter), and the
/// nearer one below the strip's last row is in the next MCU row.
struct Upsampler {
    /// The previous MCU row of each component, once there is one.
    previous: Vec<Vec<u8>>,
    /// Index of the previous MCU row.
    previous_row: Option<usize>,
    /// The chroma row just above the previous MCU row, per component (the first MCU row
    /// repeats its own first row).
    above: Vec<Vec<u8>>,
    /// One interleaved image row.
    row: Vec<u8>,
    /// Chroma of one row after vertical interpolation, 4 x the samples.
    column_sums: Vec<u16>,
    /// One upsampled chroma row per component.
    chroma: Vec<Vec<u8>>,
    /// The even and odd output samples of a row being doubled.
    halves: (Vec<u8>, Vec<u8>),
}

impl Upsampler {
    fn new(frame: &Frame) -> Self {
        let n = frame.components.len();
        Self {
            previous: frame
                .components
                .iter()
                .map(|c| vec![0; c.strip.len()])
                .collect(),
            previous_row: None,
            above: frame.components.iter().map(|c| vec![0; c.stride]).collect(),
            row: vec![0; frame.width * n],
            column_sums: vec![0; frame.components.iter().map(|c| c.stride).max().unwrap_or(0)],
            chroma: frame
                .components
                .iter()
                .map(|_| vec![0; frame.width])
                .collect(),
            halves: (Vec::new(), Vec::new()),
        }
    }

    /// Takes the MCU row just decoded into the frame's strips; emits the one before it.
    fn push_strip(
        &mut self,
        frame: &mut Frame,
        resizer: &mut RowResizer<'_>,
    ) -> Result<(), MediaError> {
        if let Some(row) = self.previous_row {
            self.emit(frame, row, false, resizer)?;
            // The previous MCU row's last chroma row is above the next one emitted.
            for ((c, above), previous) in frame
                .components
                .iter()
                .zip(&mut self.above)
                .zip(&self.previous)
            {
                let last = (c.v * 8 - 1) * c.stride;
                above.copy_from_slice(&previous[last..last + c.stride]);
            }
        } else {
            for (c, above) in frame.components.iter().zip(&mut self.above) {
                above.copy_from_slice(&c.strip[..c.stride]);
            }
        }
        for (c, previous) in frame.components.iter_mut().zip(&mut self.previous) {
            std::mem::swap(&mut c.strip, previous);
        }
        self.previous_row = Some(self.previous_row.map_or(0, |row| row + 1));
        Ok(())
    }

    /// Emits the last MCU row.
    fn finish(&mut self, frame: &Frame, resizer: &mut RowResizer<'_>) -> Result<(), MediaError> {
        match self.previous_row {
            Some(row) => self.emit(frame, row, true, resizer),
            None => Ok(()),
        }
    }

    /// Emits the image rows of MCU row `mcu_row`, held in `previous`; the frame's strips
    /// hold the next MCU row unless `last`.
    fn emit(
        &mut self,
        frame: &Frame,
        mcu_row: usize,
        last: bool,
        resizer: &mut RowResizer<'_>,
    ) -> Result<(), MediaError> {
        let rows = frame.max_v * 8;
        let first = mcu_row * rows;
        let end = (first + rows).min(frame.height);
        let n = frame.components.len();
        let width = frame.width;
        for y in first..end {
            let local = y - first;
            for (index, c) in frame.components.iter().enumerate() {
                let strip = &self.previous[index];
                let (fh, fv) = (frame.max_h / c.h, frame.max_v / c.v);
                if fh == 1 && fv == 1 {
                    let at = local * c.stride;
                    self.chroma[index].copy_from_slice(&strip[at..at + width]);
                    continue;
                }
                // Vertical: 4 x the nearer row (4:4:4 vertically) or 3 x the nearer plus
                // the farther (halved).
                let sums = &mut self.column_sums[..c.stride];
                if fv == 1 {
                    let at = local * c.stride;
                    for (sum, &near) in sums.iter_mut().zip(&strip[at..at + c.stride]) {
                        *sum = u16::from(near) * 4;
                    }
                } else {
                    let near_row = local / 2;
                    let near = &strip[near_row * c.stride..(near_row + 1) * c.stride];
                    let far: &[u8] = if local.is_multiple_of(2) {
                        if near_row == 0 {
                            &self.above[index]
                        } else {
                            &strip[(near_row - 1) * c.stride..near_row * c.stride]
                        }
                    } else if near_row + 1 < c.v * 8 {
                        &strip[(near_row + 1) * c.stride..(near_row + 2) * c.stride]
                    } else if last {
                        near
                    } else {
                        &frame.components[index].strip[..c.stride]
                    };
                    for ((sum, &near), &far) in sums.iter_mut().zip(near).zip(far) {
                        *sum = u16::from(near) * 3 + u16::from(far);
                    }
                }
                let out = &mut self.chroma[index];
                if fh == 1 {
                    for (o, &sum) in out.iter_mut().zip(sums.iter()) {
                        #[allow(clippy::cast_possible_truncation)]
                        let byte = ((sum + 2) >> 2) as u8;
                        *o = byte;
                    }
                } else {
                    upsample_row(sums, out, &mut self.halves);
                }
            }
            if n == 1 {
                resizer.push_row(&self.chroma[0])?;
            } else {
                let [y, cb, cr] = &self.chroma[..] else {
                    return Err(MediaError::Invalid("JPEG component count changed".into()));
                };
                for (((out, &y), &cb), &cr) in self
                    .row
                    .chunks_exact_mut(3)
                    .zip(y.iter())
                    .zip(cb.iter())
                    .zip(cr.iter())
                {
                    out[0] = y;
                    out[1] = cb;
                    out[2] = cr;
                }
                resizer.push_row(&self.row)?;
            }
        }
        Ok(())
    }
}

/// Doubles a row horizontally into `out` by a triangle filter: each output sample is 3/4
/// of its nearer input and 1/4 of the farther, the inputs being 4 x samples already. The
/// even and odd outputs are computed apart (loops the compiler vectorises), then
/// interleaved.
fn upsample_row(sums: &[u16], out: &mut [u8], halves: &mut (Vec<u8>, Vec<u8>)) {
    let n = out.len().div_ceil(2).min(sums.len());
    if n == 0 {
        return;
    }
    let sums = &sums[..n];
    let (even, odd) = halves;
    even.resize(n, 0);
    odd.resize(n, 0);
    #[allow(clippy::cast_possible_truncation)]
    let byte = |v: u16| (v >> 4) as u8;
    even[0] = byte(sums[0] * 4 + 8);
    for ((e, &centre), &left) in even[1..].iter_mut().zip(&sums[1..]).zip(sums) {
        *e = byte(centre * 3 + left + 8);
    }
    for ((o, &centre), &right) in odd.iter_mut().zip(sums).zip(&sums[1..]) {
        *o = byte(centre * 3 + right + 7);
    }
    odd[n - 1] = byte(sums[n - 1] * 4 + 7);
    for ((pair, &e), &o) in out.chunks_exact_mut(2).zip(even.iter()).zip(odd.iter()) {
        pair[0] = e;
        pair[1] = o;
    }
    if out.len() % 2 == 1 {
        out[out.len() - 1] = even[n - 1];
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn deadline() -> Deadline {
        Deadline::new(Duration::from_secs(30))
    }

    /// A detailed RGB (or grey) picture: gradients, a checker and hard edges.
    fn picture(width: usize, height: usize, samples: usize) -> Vec<u8> {
        (0..width * height * samples)
            .map(|i| {
                let (x, y, s) = ((i / samples) % width, i / samples / width, i % samples);
                u8::try_from((x * 3 + y * 2 + s * 60 + (x / 7 + y / 5) % 2 * 40) % 256).unwrap()
            })
            .collect()
    }

    fn encode(
        width: u16,
        height: u16,
        gray: bool,
        sampling: jpeg_encoder::SamplingFactor,
        restart: u16,
    ) -> Vec<u8> {
        let samples = if gray { 1 } else { 3 };
        let data = picture(usize::from(width), usize::from(height), samples);
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
        encoder.set_sampling_factor(sampling);
        if restart > 0 {
            encoder.set_restart_interval(restart);
        }
        let color = if gray {
            jpeg_encoder::ColorType::Luma
        } else {
            jpeg_encoder::ColorType::Rgb
        };
        encoder.encode(&data, width, height, color).unwrap();
        out
    }

    /// zune-jpeg's decode of the whole image, as YCbCr (or grey) samples.
    fn zune(bytes: &[u8], gray: bool) -> Vec<u8> {
        use zune_jpeg::zune_core::bytestream::ZCursor;
        use zune_jpeg::zune_core::colorspace::ColorSpace;
        use zune_jpeg::zune_core::options::DecoderOptions;
        let space = if gray {
            ColorSpace::Luma
        } else {
            ColorSpace::YCbCr
        };
        let options = DecoderOptions::default().jpeg_set_out_colorspace(space);
        zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options)
            .decode()
            .unwrap()
    }

    fn decode(bytes: &[u8], size: (u32, u32)) -> Option<Raster> {
        decode_resized(bytes, size, &mut Resampler::new(), &deadline()).unwrap()
    }

    #[test]
    fn matches_zune_jpeg_across_layouts_sizes_and_restarts() {
        use jpeg_encoder::SamplingFactor as S;
        for (gray, sampling, (width, height), restart) in [
            (false, S::F_2_2, (203, 117), 0),
            (false, S::F_2_2, (64, 48), 0),
            (false, S::F_2_2, (333, 97), 3),
            (false, S::F_2_1, (201, 119), 0),
            (false, S::F_2_1, (120, 80), 7),
            (false, S::F_1_1, (131, 67), 0),
            (false, S::F_1_1, (96, 40), 1),
            (false, S::F_1_2, (97, 131), 2),
            (true, S::F_1_1, (157, 93), 0),
            (true, S::F_1_1, (77, 51), 5),
        ] {
            let what = format!("{sampling:?} gray {gray} {width}x{height} restart {restart}");
            let bytes = encode(width, height, gray, sampling, restart);
            let size = (u32::from(width), u32::from(height));
            // A resize to the same size is the identity: the decode itself.
            let ours = decode(&bytes, size).unwrap_or_else(|| panic!("{what}: not decoded"));
            let expected = if gray {
                Channels::Gray
            } else {
                Channels::YCbCr
            };
            assert_eq!(
                (ours.width, ours.height, ours.channels),
                (size.0, size.1, expected)
            );
            let reference = zune(&bytes, gray);
            assert_eq!(ours.pixels.len(), reference.len(), "{what}");
            let n = expected.count();
            let w = usize::from(width);
            for channel in 0..n {
                let pairs = ours.pixels.iter().zip(&reference).skip(channel).step_by(n);
                // In the last column, libjpeg (and this module) repeat the last chroma
                // sample of the row; zune-jpeg interpolates towards the padding past it.
                let worst = pairs
                    .clone()
                    .enumerate()
                    .filter(|(i, _)| channel == 0 || i % w != w - 1)
                    .map(|(_, (a, b))| a.abs_diff(*b))
                    .max()
                    .unwrap();
                let ours: Vec<u8> = pairs.clone().map(|(a, _)| *a).collect();
                let theirs: Vec<u8> = pairs.map(|(_, b)| *b).collect();
                let mean = crate::jpeg_baseline::tests::mean_error(&ours, &theirs);
                // Luma differs only by the transforms' rounding; chroma also by the
                // upsamplers' rounding at the edges.
                let (max_worst, max_mean) = if channel == 0 { (2, 0.1) } else { (4, 0.3) };
                assert!(
                    worst <= max_worst && mean < max_mean,
                    "{what}, channel {channel}: up to {worst}, mean {mean}"
                );
            }
        }
    }

    #[test]
    fn a_shrunk_decode_matches_resizing_the_whole_decode() {
        let bytes = encode(401, 303, false, jpeg_encoder::SamplingFactor::F_2_2, 4);
        let ours = decode(&bytes, (250, 189)).unwrap();
        let whole = Raster::new(401, 303, Channels::YCbCr, zune(&bytes, false));
        let expected = Resampler::new().resize(&whole, None, 250, 189).unwrap();
        let worst = ours
            .pixels
            .iter()
            .zip(&expected.pixels)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        let mean = crate::jpeg_baseline::tests::mean_error(&ours.pixels, &expected.pixels);
        assert!(worst <= 3 && mean < 0.3, "up to {worst}, mean {mean}");
    }

    #[test]
    fn anything_else_or_damaged_is_left_to_the_full_decoder() {
        let bytes = encode(120, 90, false, jpeg_encoder::SamplingFactor::F_2_2, 2);
        assert!(decode(&bytes, (60, 45)).is_some());
        // Cut short: the data would run out.
        assert!(decode(&bytes[..bytes.len() * 2 / 3], (60, 45)).is_none());
        // A restart marker damaged.
        let marker = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xD0])
            .expect("restart markers");
        let mut damaged = bytes.clone();
        damaged[marker + 1] = 0x00;
        assert!(decode(&damaged, (60, 45)).is_none());
        // Larger than the image.
        assert!(decode(&bytes, (121, 90)).is_none());
        // Progressive.
        let progressive = include_bytes!("../tests/fixtures/progressive-420.jpg");
        assert!(decode(progressive, (60, 30)).is_none());
        assert!(decode(b"GIF89a", (1, 1)).is_none());
        // Out of time.
        let spent = Deadline::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
        assert!(matches!(
            decode_resized(&bytes, (60, 45), &mut Resampler::new(), &spent),
            Err(MediaError::TimedOut(_))
        ));
    }
}
