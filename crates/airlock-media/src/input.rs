//! Where the pipeline reads an image from: bytes already in memory, or a PNG file read as
//! needed and never held whole.
//!
//! A PNG is the one format worth reading piecemeal: its decoder takes a reader and wants
//! rows in order, and its files are large (a 12-megapixel photo is over 30 MB, more than
//! the variants made from it). The header walk reads only chunk headers and the few small
//! chunks it uses; the decoder reads through a buffer. JPEG, GIF and WebP decoders want
//! slices, and those files are compressed, so they are read whole.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::decode::{self, Decoded, Request, Streamed};
use crate::header::{self, Header, PNG_SIGNATURE};
use crate::resize::Resampler;
use crate::{FileError, Limits, MediaError};

/// Buffer of the PNG decoder's reads from a file.
const PNG_READ_BUFFER: usize = 64 * 1024;

/// The image one pipeline run works on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    /// The whole file, in memory.
    Bytes(&'a [u8]),
    /// A PNG file (its signature already checked), read as needed.
    PngFile(&'a PngFile),
}

impl<'a> Input<'a> {
    /// Size of the file in bytes.
    pub(crate) fn len(self) -> u64 {
        match self {
            Self::Bytes(bytes) => u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            Self::PngFile(file) => file.len,
        }
    }

    /// The header walk, see [`header::read`].
    pub(crate) fn header(self) -> Result<Header<'a>, MediaError> {
        match self {
            Self::Bytes(bytes) => header::read(bytes),
            Self::PngFile(file) => header::png_from_reader(&mut file.reader(), file.len),
        }
    }

    /// The whole decode, see [`decode::decode`].
    pub(crate) fn decode(self, request: &Request<'_>) -> Result<Decoded, MediaError> {
        match self {
            Self::Bytes(bytes) => decode::decode(bytes, request),
            Self::PngFile(file) => decode::png_from(file.buffered(), request),
        }
    }

    /// A baseline JPEG decoded strip by strip into a resize, see [`decode::jpeg_resized`].
    pub(crate) fn jpeg_resized(
        self,
        request: &Request<'_>,
        size: (u32, u32),
        resampler: &mut Resampler,
    ) -> Result<Option<Streamed>, MediaError> {
        match self {
            Self::Bytes(bytes) => decode::jpeg_resized(bytes, request, size, resampler),
            Self::PngFile(_) => Ok(None),
        }
    }

    /// A PNG decoded row by row into a resize, see [`decode::png_resized`].
    pub(crate) fn png_resized(
        self,
        request: &Request<'_>,
        size: (u32, u32),
        resampler: &mut Resampler,
    ) -> Result<Option<Streamed>, MediaError> {
        match self {
            Self::Bytes(bytes) => decode::png_resized(bytes, request, size, resampler),
            Self::PngFile(file) => {
                decode::png_resized_from(file.buffered(), request, size, resampler)
            }
        }
    }
}

/// An open PNG file. Every pass (header walk, decodes) reads it from the start through its
/// own [`FileReader`], which sees only the first `len` bytes: the length the size limit was
/// checked against, even if the file grows meanwhile.
#[derive(Debug)]
pub(crate) struct PngFile {
    file: File,
    len: u64,
    /// The first read error, kept so that it is reported as an I/O failure rather than as
    /// the image's fault.
    error: RefCell<Option<io::Error>>,
}

impl PngFile {
    pub(crate) fn new(file: File, len: u64) -> Self {
        Self {
            file,
            len,
            error: RefCell::new(None),
        }
    }

    /// A reader from the start of the file.
    pub(crate) fn reader(&self) -> FileReader<'_> {
        FileReader {
            file: &self.file,
            pos: 0,
            len: self.len,
            seek_pending: true,
            error: &self.error,
        }
    }

    fn buffered(&self) -> BufReader<FileReader<'_>> {
        BufReader::with_capacity(PNG_READ_BUFFER, self.reader())
    }

    /// The first read error any reader met, if one did.
    pub(crate) fn take_error(&self) -> Option<io::Error> {
        self.error.borrow_mut().take()
    }
}

/// Reads a [`PngFile`] from its own position, up to the file's checked length. Seeks are
/// deferred to the next read, so skipping over a chunk costs nothing until something
/// after it is read.
#[derive(Debug)]
pub(crate) struct FileReader<'a> {
    file: &'a File,
    pos: u64,
    len: u64,
    seek_pending: bool,
    error: &'a RefCell<Option<io::Error>>,
}

impl FileReader<'_> {
    /// Keeps the first I/O error for [`PngFile::take_error`] and hands the decoder a copy.
    fn keep(&self, error: io::Error) -> io::Error {
        let copy = io::Error::new(error.kind(), error.to_string());
        self.error.borrow_mut().get_or_insert(error);
        copy
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let want = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        if want == 0 {
            return Ok(0);
        }
        let mut file = self.file;
        if self.seek_pending {
            file.seek(SeekFrom::Start(self.pos))
                .map_err(|e| self.keep(e))?;
            self.seek_pending = false;
        }
        loop {
            match file.read(&mut buf[..want]) {
                Ok(read) => {
                    self.pos += read as u64;
                    return Ok(read);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.keep(error)),
            }
        }
    }
}

impl Seek for FileReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(pos) => Some(pos),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if target != self.pos {
            self.pos = target;
            self.seek_pending = true;
        }
        Ok(target)
    }
}

/// Opens the image at `path` and runs `job` on it: a PNG as a [`PngFile`], anything else
/// (and anything that is not a regular file, such as a pipe) read whole into memory.
///
/// The file's length is checked against [`Limits::max_bytes`] before anything is read, and
/// a read of the whole file stops one byte past the limit, so a file growing meanwhile is
/// refused rather than read. Failing to open or read the file is [`FileError::Io`], also
/// when the failure surfaced inside `job` as a decoding error.
pub(crate) fn with_file<T>(
    path: &Path,
    limits: &Limits,
    job: impl FnOnce(Input<'_>) -> Result<T, MediaError>,
) -> Result<T, FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    check_size(metadata.len(), limits)?;
    let mut signature = [0u8; 8];
    let got = read_up_to(&mut file, &mut signature).map_err(io)?;
    if metadata.is_file() && signature[..got] == *PNG_SIGNATURE {
        let png = PngFile::new(file, metadata.len());
        let outcome = job(Input::PngFile(&png));
        if let Some(error) = png.take_error() {
            return Err(io(error));
        }
        return Ok(outcome?);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    bytes.extend_from_slice(&signature[..got]);
    let rest = limits
        .max_bytes
        .saturating_add(1)
        .saturating_sub(got as u64);
    file.take(rest).read_to_end(&mut bytes).map_err(io)?;
    Ok(job(Input::Bytes(&bytes))?)
}

/// Refuses an input larger than [`Limits::max_bytes`].
pub(crate) fn check_size(len: u64, limits: &Limits) -> Result<(), MediaError> {
    if len > limits.max_bytes {
        return Err(MediaError::TooLarge(format!(
            "{len} bytes exceed the {} byte limit",
            limits.max_bytes
        )));
    }
    Ok(())
}

/// Fills `buf`, short only at the end of the file.
pub(crate) fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;
    use crate::MediaOptions;
    use crate::decode::Deadline;

    fn chunk(kind: [u8; 4], data: &[u8]) -> Vec<u8> {
        // The walk never looks at CRCs; the decoder is told nothing about these files.
        let mut out = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(&kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&[0; 4]);
        out
    }

    fn png_file(width: u32, height: u32) -> Vec<u8> {
        let samples: Vec<u8> = (0..width * height * 3)
            .map(|i| u8::try_from((i * 7 + i / 997) % 251).unwrap())
            .collect();
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&samples).unwrap();
        writer.finish().unwrap();
        out
    }

    /// A reader that records which byte ranges were read.
    struct Recording {
        inner: Cursor<Vec<u8>>,
        reads: Vec<(u64, u64)>,
    }

    impl Read for Recording {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let start = self.inner.position();
            let read = self.inner.read(buf)?;
            self.reads.push((start, start + read as u64));
            Ok(read)
        }
    }

    impl Seek for Recording {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    /// Byte ranges of the data of every chunk of a kind.
    fn chunk_data(bytes: &[u8], kind: [u8; 4]) -> Vec<(u64, u64)> {
        let mut ranges = Vec::new();
        let mut pos = 8;
        while pos + 8 <= bytes.len() {
            let length = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            if bytes[pos + 4..pos + 8] == kind {
                ranges.push(((pos + 8) as u64, (pos + 8 + length) as u64));
            }
            pos += 12 + length;
        }
        ranges
    }

    #[test]
    fn the_file_walk_reads_no_image_data_and_agrees_with_the_bytes_walk() {
        let plain = png_file(300, 200);
        let exif = b"MM\0\x2A\0\0\0\x08\0\0\0\0\0\0".to_vec();
        // Several IDAT chunks, a large unused chunk, and eXIf after the image data.
        let idat = chunk_data(&plain, *b"IDAT")[0];
        let data = &plain[usize::try_from(idat.0).unwrap()..usize::try_from(idat.1).unwrap()];
        let mut bytes = plain[..33].to_vec();
        bytes.extend(chunk(*b"zTXt", &[b'x'; 5000]));
        for piece in data.chunks(data.len() / 5) {
            bytes.extend(chunk(*b"IDAT", piece));
        }
        bytes.extend(chunk(*b"eXIf", &exif));
        bytes.extend(chunk(*b"IEND", &[]));
        let len = bytes.len() as u64;

        let expected = header::read(&bytes).unwrap();
        let mut reader = Recording {
            inner: Cursor::new(bytes.clone()),
            reads: Vec::new(),
        };
        let walked = header::png_from_reader(&mut reader, len).unwrap();
        assert_eq!(walked.info, expected.info);
        assert_eq!(walked.exif.as_deref(), Some(&exif[..]));
        assert_eq!(walked.exif, expected.exif);

        let skipped: Vec<(u64, u64)> = [*b"IDAT", *b"zTXt"]
            .into_iter()
            .flat_map(|kind| chunk_data(&bytes, kind))
            .collect();
        assert!(skipped.len() > 5);
        let read: u64 = reader.reads.iter().map(|(start, end)| end - start).sum();
        assert!(read < 200, "the walk read {read} bytes");
        for (start, end) in &reader.reads {
            for (data_start, data_end) in &skipped {
                assert!(
                    end <= data_start || start >= data_end,
                    "read {start}..{end} overlaps chunk data {data_start}..{data_end}"
                );
            }
        }
    }

    #[test]
    fn a_file_of_many_tiny_chunks_is_walked_in_large_reads() {
        let plain = png_file(8, 8);
        let mut bytes = plain[..33].to_vec();
        for _ in 0..200_000 {
            bytes.extend(chunk(*b"tEXt", &[]));
        }
        bytes.extend(chunk(*b"acTL", &[0, 0, 0, 3, 0, 0, 0, 0]));
        bytes.extend_from_slice(&plain[33..]);
        let len = bytes.len() as u64;
        let expected = header::read(&bytes).unwrap().info;
        assert_eq!(expected.frame_count, 3);
        let mut reader = Recording {
            inner: Cursor::new(bytes),
            reads: Vec::new(),
        };
        let walked = header::png_from_reader(&mut reader, len).unwrap();
        assert_eq!(walked.info, expected);
        // One read per chunk header at first, then 64 KiB at a time.
        let reads = reader.reads.len();
        assert!(reads < 32_768 + 100, "{reads} reads");
    }

    #[test]
    fn a_walk_over_a_short_input_ends_where_the_bytes_walk_ends() {
        let bytes = png_file(40, 30);
        for cut in [
            0,
            7,
            8,
            20,
            28,
            29,
            33,
            37,
            45,
            bytes.len() - 12,
            bytes.len() - 1,
        ] {
            let prefix = &bytes[..cut];
            // Also a reader holding more than it admits to: `len` is the file.
            let mut reader = Cursor::new(bytes.clone());
            let walked = header::png_from_reader(&mut reader, cut as u64);
            match (header::read(prefix), walked) {
                (Ok(expected), Ok(walked)) => assert_eq!(walked.info, expected.info, "{cut}"),
                (Err(expected), Err(walked)) if cut < 8 => {
                    // A prefix without the whole signature is not sniffed as PNG at all.
                    assert!(matches!(expected, MediaError::Unsupported(_)), "{cut}");
                    assert!(matches!(walked, MediaError::Invalid(_)), "{cut}");
                }
                (expected, walked) => {
                    assert_eq!(walked.map(|h| h.info), expected.map(|h| h.info), "{cut}");
                }
            }
        }
    }

    fn request<'a>(header: &'a Header<'a>, options: &'a MediaOptions) -> Request<'a> {
        Request {
            header,
            limits: &options.limits,
            deadline: Deadline::new(options.limits.decode_timeout),
            color_profile: options.color_profile,
            min_size: (header.info.width, header.info.height),
            transcode: false,
            orientation: 1,
        }
    }

    #[test]
    fn a_png_file_that_changes_after_its_header_was_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changing.png");
        let options = MediaOptions::default();
        let rewrite = |bytes: &[u8]| {
            // In place: the open file sees the new contents.
            let mut file = File::create(&path).unwrap();
            file.write_all(bytes).unwrap();
        };

        rewrite(&png_file(64, 48));
        let file = File::open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        let png = PngFile::new(file, len);
        let input = Input::PngFile(&png);
        let header = input.header().unwrap();
        assert_eq!((header.info.width, header.info.height), (64, 48));
        let request = request(&header, &options);
        assert!(input.decode(&request).is_ok());

        // Other dimensions.
        rewrite(&png_file(48, 64));
        let changed = Err(MediaError::Invalid(
            "PNG header changed between reads".into(),
        ));
        assert_eq!(input.decode(&request).map(|_| ()), changed);
        let mut resampler = Resampler::new();
        assert_eq!(
            input
                .png_resized(&request, (32, 24), &mut resampler)
                .map(|_| ()),
            changed
        );
        // Emptied, or cut short in the image data.
        rewrite(&[]);
        assert!(matches!(
            input.decode(&request),
            Err(MediaError::Invalid(_))
        ));
        let whole = png_file(64, 48);
        rewrite(&whole[..whole.len() / 2]);
        assert!(matches!(
            input.decode(&request),
            Err(MediaError::Invalid(_))
        ));
        assert!(matches!(
            input.png_resized(&request, (32, 24), &mut resampler),
            Err(MediaError::Invalid(_))
        ));
        // End of file is not an I/O failure.
        assert!(png.take_error().is_none());
    }

    #[test]
    fn a_file_reader_stops_at_the_checked_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grown.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        let png = PngFile::new(File::open(&path).unwrap(), 6);
        let mut all = Vec::new();
        png.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, b"012345");
        let mut reader = png.reader();
        assert_eq!(reader.seek(SeekFrom::End(-2)).unwrap(), 4);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"45");
        assert!(reader.seek(SeekFrom::Current(-7)).is_err());
    }
}
