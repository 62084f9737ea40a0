//! The judging engine: shared counters, capped readers, nesting, and the stream formats.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;

use crate::{
    ArchiveError, ArchiveFinding, ArchiveFormat, ArchivePolicy, ArchiveReport,
    DECODER_MEMORY_LIMIT, DETECT_LEN, Finding, Judgement, ScannerLimits, detect,
};

/// Nested archives that need seeking stay in memory up to this size, then go to a
/// temporary file (itself capped at the scanner's `max_file_size`).
const SPOOL_IN_MEMORY: usize = 4 << 20;
/// Member names in messages are cut to this many bytes.
const NAME_LIMIT: usize = 512;

pub(crate) trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// State shared between the judge and the readers it stacks.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Member bytes inflated so far, over all levels.
    total: u64,
    /// Highest ratio seen (see `ArchiveReport::max_ratio`).
    max_ratio: u64,
    /// A limit a reader hit; it returned an error to unwind whatever library was reading.
    finding: Option<ArchiveFinding>,
    /// A real read failure of the underlying file (not corrupt data).
    io_error: Option<io::Error>,
}

impl Shared {
    pub(crate) fn total_plus(&self, more: u64) -> u64 {
        self.total.saturating_add(more)
    }
}

pub(crate) type SharedRef = Rc<RefCell<Shared>>;

/// Why judging stopped early.
#[derive(Debug)]
pub(crate) enum Stop {
    Finding(ArchiveFinding),
    Io(io::Error),
}

impl From<ArchiveFinding> for Stop {
    fn from(finding: ArchiveFinding) -> Self {
        Self::Finding(finding)
    }
}

pub(crate) fn unscannable(detail: impl Into<String>) -> Stop {
    Stop::Finding(ArchiveFinding::new(Finding::Unscannable, detail))
}

/// The numbers every capped reader checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    max_total_size: u64,
    max_ratio: u64,
    ratio_min_size: u64,
    max_file_size: u64,
    max_scan_size: u64,
    /// Size of the outermost file: it counts toward the scanner's scan size, and is the
    /// denominator of the whole archive's ratio.
    file_len: u64,
}

impl Caps {
    /// Checks the totals after `total` member bytes at all levels.
    pub(crate) fn check_total(self, total: u64) -> Result<(), ArchiveFinding> {
        let ratio = total / self.file_len.max(1);
        if total >= self.ratio_min_size && ratio > self.max_ratio {
            return Err(ArchiveFinding::new(
                Finding::Ratio,
                format!(
                    "the archive inflates to more than {total} bytes from {} (ratio {ratio}, policy max {})",
                    self.file_len, self.max_ratio
                ),
            ));
        }
        if total > self.max_total_size {
            return Err(ArchiveFinding::new(
                Finding::TooLarge,
                format!(
                    "members total more than {total} uncompressed bytes (policy max {})",
                    self.max_total_size
                ),
            ));
        }
        let scanned = total.saturating_add(self.file_len);
        if scanned > self.max_scan_size {
            return Err(ArchiveFinding::new(
                Finding::Unscannable,
                format!(
                    "the scanner would read more than {scanned} bytes (the file plus its members), past its max scan size {}",
                    self.max_scan_size
                ),
            ));
        }
        Ok(())
    }

    /// Checks one member that has reached `size` bytes from `compressed` bytes (if known).
    pub(crate) fn check_member(
        self,
        name: &str,
        size: u64,
        compressed: Option<u64>,
    ) -> Result<(), ArchiveFinding> {
        if let Some(compressed) = compressed {
            let ratio = size / compressed.max(1);
            if size >= self.ratio_min_size && ratio > self.max_ratio {
                return Err(ArchiveFinding::new(
                    Finding::Ratio,
                    format!(
                        "member {name} inflates to {size} bytes or more from {compressed} (ratio {ratio}, policy max {})",
                        self.max_ratio
                    ),
                ));
            }
        }
        if size > self.max_file_size {
            return Err(ArchiveFinding::new(
                Finding::Unscannable,
                format!(
                    "member {name} is larger than {} bytes, the scanner's max file size: it would be scanned only in part",
                    self.max_file_size
                ),
            ));
        }
        Ok(())
    }
}

/// The outermost reader: keeps a real read failure aside so it is reported as an I/O error
/// and not mistaken for corrupt data by the libraries above it.
pub(crate) struct Source<R> {
    inner: R,
    shared: SharedRef,
}

impl<R> Source<R> {
    pub(crate) fn new(inner: R, shared: SharedRef) -> Self {
        Self { inner, shared }
    }

    fn keep(&self, err: io::Error) -> io::Error {
        if err.kind() == io::ErrorKind::Interrupted {
            return err;
        }
        let message = err.to_string();
        let mut shared = self.shared.borrow_mut();
        if shared.io_error.is_none() {
            shared.io_error = Some(err);
        }
        io::Error::other(format!("read failed: {message}"))
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| self.keep(e))
    }
}

impl<R: Seek> Seek for Source<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos).map_err(|e| self.keep(e))
    }
}

/// Counts the bytes a decompressor takes from its input.
pub(crate) struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// How big a member is compressed, for its ratio.
pub(crate) enum Compressed {
    /// Not compressed on its own (tar members, solid 7z blocks).
    Unknown,
    /// Declared and checked against the container's layout (zip).
    Known(u64),
    /// Counted as the decompressor reads (streams).
    Counted(Rc<Cell<u64>>),
}

/// A member's content as it is inflated: counts its bytes and stops at every cap.
pub(crate) struct MemberReader<'n, R> {
    inner: R,
    name: &'n str,
    read: u64,
    declared: Option<u64>,
    compressed: Compressed,
    caps: Caps,
    shared: SharedRef,
}

impl<'n, R: Read> MemberReader<'n, R> {
    pub(crate) fn new(
        judge: &Judge<'_>,
        inner: R,
        name: &'n str,
        declared: Option<u64>,
        compressed: Compressed,
    ) -> Self {
        Self {
            inner,
            name,
            read: 0,
            declared,
            compressed,
            caps: judge.caps,
            shared: Rc::clone(&judge.shared),
        }
    }

    fn compressed(&self) -> Option<u64> {
        match &self.compressed {
            Compressed::Unknown => None,
            Compressed::Known(n) => Some(*n),
            Compressed::Counted(count) => Some(count.get()),
        }
    }

    fn check(&self) -> Result<(), ArchiveFinding> {
        if let Some(declared) = self.declared
            && self.read > declared
        {
            return Err(ArchiveFinding::new(
                Finding::Unscannable,
                format!(
                    "member {} inflates past its declared size of {declared} bytes",
                    self.name
                ),
            ));
        }
        self.caps
            .check_member(self.name, self.read, self.compressed())?;
        self.caps.check_total(self.shared.borrow().total)
    }

    /// After the member was read to its end: checks it held what it declared, and notes
    /// its ratio.
    pub(crate) fn finish(&self) -> Result<(), Stop> {
        if let Some(declared) = self.declared
            && self.read != declared
        {
            return Err(unscannable(format!(
                "member {} inflates to {} bytes but declares {declared}",
                self.name, self.read
            )));
        }
        if let Some(compressed) = self.compressed()
            && self.read >= self.caps.ratio_min_size
        {
            let ratio = self.read / compressed.max(1);
            let mut shared = self.shared.borrow_mut();
            shared.max_ratio = shared.max_ratio.max(ratio);
        }
        Ok(())
    }
}

impl<R: Read> Read for MemberReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.shared.borrow_mut().total += n as u64;
        if let Err(finding) = self.check() {
            let message = finding.detail.clone();
            self.shared.borrow_mut().finding.get_or_insert(finding);
            return Err(io::Error::other(message));
        }
        Ok(n)
    }
}

/// Joins a member name to the path of the archive holding it, for messages.
pub(crate) fn join(parent: &str, member: &[u8]) -> String {
    let cut = &member[..member.len().min(NAME_LIMIT)];
    let mut name = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < member.len() {
        name.push_str("...");
    }
    if parent.is_empty() {
        name
    } else {
        format!("{parent} > {name}")
    }
}

/// "the archive" at the top, else the member holding this archive.
pub(crate) fn which(name: &str) -> String {
    if name.is_empty() {
        "the archive".to_owned()
    } else {
        format!("nested archive {name}")
    }
}

pub(crate) struct Judge<'p> {
    pub(crate) policy: &'p ArchivePolicy,
    pub(crate) limits: &'p ScannerLimits,
    pub(crate) caps: Caps,
    pub(crate) shared: SharedRef,
    members: u64,
    depth: u32,
}

pub(crate) fn judge_top<R: Read + Seek>(
    reader: R,
    policy: &ArchivePolicy,
    limits: &ScannerLimits,
) -> Result<Judgement, ArchiveError> {
    let shared = SharedRef::default();
    let mut source = Source::new(reader, Rc::clone(&shared));
    let io_error = |source: io::Error| ArchiveError::Io { path: None, source };
    let file_len = source.seek(SeekFrom::End(0)).map_err(io_error)?;
    source.seek(SeekFrom::Start(0)).map_err(io_error)?;
    let mut head = Vec::with_capacity(DETECT_LEN);
    (&mut source)
        .take(DETECT_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io_error)?;
    let Some(format) = detect(&head) else {
        return Ok(Judgement::NotArchive);
    };
    source.seek(SeekFrom::Start(0)).map_err(io_error)?;
    let mut judge = Judge {
        policy,
        limits,
        caps: Caps {
            max_total_size: policy.max_total_size,
            max_ratio: policy.max_ratio,
            ratio_min_size: policy.ratio_min_size,
            max_file_size: limits.max_file_size,
            max_scan_size: limits.max_scan_size,
            file_len,
        },
        shared: Rc::clone(&shared),
        members: 0,
        depth: 0,
    };
    let outcome = judge.judge_top(format, &mut source, file_len);
    let mut shared = shared.borrow_mut();
    match outcome {
        Ok(()) => {
            let ratio = shared.total / file_len.max(1);
            if shared.total >= policy.ratio_min_size {
                shared.max_ratio = shared.max_ratio.max(ratio);
            }
            Ok(Judgement::Accepted(ArchiveReport {
                format,
                members: judge.members,
                total_uncompressed: shared.total,
                depth: judge.depth,
                max_ratio: shared.max_ratio,
            }))
        }
        Err(Stop::Finding(finding)) => Ok(Judgement::Rejected(finding)),
        Err(Stop::Io(source)) => Err(io_error(source)),
    }
}

impl Judge<'_> {
    fn judge_top(
        &mut self,
        format: ArchiveFormat,
        source: &mut dyn ReadSeek,
        file_len: u64,
    ) -> Result<(), Stop> {
        if !self.policy.allowed {
            return Err(ArchiveFinding::new(
                Finding::NotAllowed,
                format!(
                    "the file is a {format} archive; archives are not allowed for this purpose"
                ),
            )
            .into());
        }
        if file_len > self.limits.max_file_size {
            return Err(unscannable(format!(
                "the archive is {file_len} bytes, larger than the scanner's max file size {}",
                self.limits.max_file_size
            )));
        }
        self.enter(format, "", 1)?;
        self.judge_seekable(format, source, file_len, 1, "")
    }

    /// Converts an error from a reader stack into why judging stopped: a real read failure
    /// kept by `Source`, a limit hit by a `MemberReader`, or else corrupt data.
    pub(crate) fn classify(&self, err: &dyn std::fmt::Display, context: &str) -> Stop {
        let mut shared = self.shared.borrow_mut();
        if let Some(io_error) = shared.io_error.take() {
            return Stop::Io(io_error);
        }
        if let Some(finding) = shared.finding.take() {
            return Stop::Finding(finding);
        }
        unscannable(format!("{context}: {err}"))
    }

    /// Counts one member against the policy and the scanner.
    pub(crate) fn count_member(&mut self, name: &str) -> Result<(), Stop> {
        self.members += 1;
        if self.members > self.policy.max_members {
            return Err(ArchiveFinding::new(
                Finding::TooLarge,
                format!(
                    "more than {} members (policy max; reached at {name})",
                    self.policy.max_members
                ),
            )
            .into());
        }
        if self.members > self.limits.max_files {
            return Err(unscannable(format!(
                "more than {} members, the scanner's max files (reached at {name})",
                self.limits.max_files
            )));
        }
        Ok(())
    }

    /// Checks an archive layer at `depth` (1 for the outermost) before judging it.
    fn enter(&mut self, format: ArchiveFormat, name: &str, depth: u32) -> Result<(), Stop> {
        if !self.policy.formats.contains(&format) {
            return Err(ArchiveFinding::new(
                Finding::NotAllowed,
                format!(
                    "{} is a {format} archive, a format not allowed for this purpose",
                    which(name)
                ),
            )
            .into());
        }
        if depth > self.policy.max_depth {
            return Err(ArchiveFinding::new(
                Finding::TooDeep,
                format!(
                    "{} is archive layer {depth} (policy max depth {})",
                    which(name),
                    self.policy.max_depth
                ),
            )
            .into());
        }
        // clamd scans the members of layer d at recursion level d; stay below its maximum.
        if depth >= self.limits.max_recursion {
            return Err(unscannable(format!(
                "{} is archive layer {depth}, at the scanner's max recursion {}",
                which(name),
                self.limits.max_recursion
            )));
        }
        self.depth = self.depth.max(depth);
        Ok(())
    }

    /// Counts a member and judges its content, read through `data` (a `MemberReader`).
    pub(crate) fn member(
        &mut self,
        name: &str,
        depth: u32,
        data: &mut dyn Read,
    ) -> Result<(), Stop> {
        self.count_member(name)?;
        self.member_content(name, depth, data)
    }

    /// Judges a member's content (already counted): a nested archive one level deeper,
    /// anything else read through so its bytes are counted and capped.
    pub(crate) fn member_content(
        &mut self,
        name: &str,
        depth: u32,
        data: &mut dyn Read,
    ) -> Result<(), Stop> {
        let mut head = Vec::with_capacity(DETECT_LEN);
        data.take(DETECT_LEN as u64)
            .read_to_end(&mut head)
            .map_err(|e| self.classify(&e, &format!("member {name}")))?;
        if let Some(format) = detect(&head) {
            self.enter(format, name, depth + 1)?;
            let mut chained = io::Cursor::new(head).chain(&mut *data);
            match format {
                ArchiveFormat::Zip | ArchiveFormat::SevenZip => {
                    self.spool_and_judge(format, &mut chained, name, depth + 1)?;
                }
                _ => self.judge_stream(format, &mut chained, depth + 1, name)?,
            }
        }
        // Whatever a nested judgement left unread (trailing bytes) is still counted.
        io::copy(data, &mut io::sink())
            .map_err(|e| self.classify(&e, &format!("member {name}")))?;
        Ok(())
    }

    /// Copies a nested archive that needs seeking to a spool (memory, then a temporary
    /// file; its size is capped by the member's reader) and judges it from there.
    fn spool_and_judge(
        &mut self,
        format: ArchiveFormat,
        data: &mut dyn Read,
        name: &str,
        depth: u32,
    ) -> Result<(), Stop> {
        let mut spool = tempfile::spooled_tempfile(SPOOL_IN_MEMORY);
        let mut buf = vec![0u8; 64 * 1024];
        let mut len = 0u64;
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.classify(&e, &format!("member {name}"))),
            };
            spool.write_all(&buf[..n]).map_err(Stop::Io)?;
            len += n as u64;
        }
        spool.seek(SeekFrom::Start(0)).map_err(Stop::Io)?;
        let mut source = Source::new(spool, Rc::clone(&self.shared));
        self.judge_seekable(format, &mut source, len, depth, name)
    }

    /// Judges an archive layer that can be read at random (the outermost file, a spool).
    fn judge_seekable(
        &mut self,
        format: ArchiveFormat,
        source: &mut dyn ReadSeek,
        len: u64,
        depth: u32,
        name: &str,
    ) -> Result<(), Stop> {
        match format {
            ArchiveFormat::Zip => self.judge_zip(source, len, depth, name),
            ArchiveFormat::SevenZip => self.judge_sevenz(source, depth, name),
            _ => self.judge_stream(format, source, depth, name),
        }
    }

    /// Judges an archive layer read once from start to end.
    fn judge_stream(
        &mut self,
        format: ArchiveFormat,
        input: &mut dyn Read,
        depth: u32,
        name: &str,
    ) -> Result<(), Stop> {
        match format {
            ArchiveFormat::Tar => self.judge_tar(input, depth, name),
            ArchiveFormat::Gzip
            | ArchiveFormat::Bzip2
            | ArchiveFormat::Xz
            | ArchiveFormat::Zstd => self.judge_compressed(format, input, depth, name),
            ArchiveFormat::Rar => Err(unscannable(format!(
                "{} is a rar archive, whose members airlock cannot list, so what the scanner read is unknown",
                which(name)
            ))),
            ArchiveFormat::Zip | ArchiveFormat::SevenZip => {
                unreachable!("zip and 7z are spooled and judged seekable")
            }
        }
    }

    /// A single compressed stream (gzip, possibly multi-member; bzip2; xz; zstd): its
    /// content is one member, judged in turn.
    fn judge_compressed(
        &mut self,
        format: ArchiveFormat,
        input: &mut dyn Read,
        depth: u32,
        name: &str,
    ) -> Result<(), Stop> {
        let consumed = Rc::new(Cell::new(0));
        let mut counted = Counting {
            inner: input,
            count: Rc::clone(&consumed),
        };
        let content = join(name, format!("({format} content)").as_bytes());
        let window_limit = u32::try_from(DECODER_MEMORY_LIMIT / 1024).unwrap_or(u32::MAX);
        {
            let decoder: Box<dyn Read + '_> = match format {
                ArchiveFormat::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut counted)),
                ArchiveFormat::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(&mut counted)),
                ArchiveFormat::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
                    &mut counted,
                    true,
                    window_limit,
                )),
                ArchiveFormat::Zstd => {
                    let mut frame = ruzstd::decoding::FrameDecoder::new();
                    frame.set_max_window_size(DECODER_MEMORY_LIMIT);
                    let decoder =
                        ruzstd::decoding::StreamingDecoder::new_with_decoder(&mut counted, frame)
                            .map_err(|e| {
                            self.classify(&e, &format!("{}: zstd frame header", which(name)))
                        })?;
                    Box::new(decoder)
                }
                _ => unreachable!("only compressed streams come here"),
            };
            let mut member = MemberReader::new(
                self,
                decoder,
                &content,
                None,
                Compressed::Counted(Rc::clone(&consumed)),
            );
            self.member(&content, depth, &mut member)?;
            member.finish()?;
        }
        if format == ArchiveFormat::Zstd {
            // One frame is read; a second frame (or trailing data) would go unjudged.
            let mut extra = [0u8; 1];
            let n = counted
                .read(&mut extra)
                .map_err(|e| self.classify(&e, &which(name)))?;
            if n > 0 {
                return Err(unscannable(format!(
                    "{} holds data after its first zstd frame, which airlock does not read",
                    which(name)
                )));
            }
        }
        Ok(())
    }

    /// A tar stream: every header, and every file's content read through.
    fn judge_tar(&mut self, input: &mut dyn Read, depth: u32, name: &str) -> Result<(), Stop> {
        let context = format!("{} (tar)", which(name));
        let mut archive = tar::Archive::new(input);
        let entries = archive.entries().map_err(|e| self.classify(&e, &context))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.classify(&e, &context))?;
            let member = join(name, &entry.path_bytes());
            let kind = entry.header().entry_type();
            let size = entry.size();
            if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
                self.count_member(&member)?;
                self.caps.check_member(&member, size, None)?;
                // A sparse member's header size is its stored size, not its content's.
                let declared = (!kind.is_gnu_sparse()).then_some(size);
                let mut data =
                    MemberReader::new(self, &mut entry, &member, declared, Compressed::Unknown);
                self.member_content(&member, depth, &mut data)?;
                data.finish()?;
            } else {
                self.count_member(&member)?;
            }
        }
        Ok(())
    }
}
