//! 7z, listed and decompressed through `sevenz-rust2` with a memory limit and no password.

use sevenz_rust2::{ArchiveReader, Error, Password};

use crate::judge::{Compressed, Judge, MemberReader, ReadSeek, Stop, join, unscannable, which};
use crate::{ArchiveFinding, DECODER_MEMORY_LIMIT, Finding};

impl Judge<'_> {
    pub(crate) fn judge_sevenz(
        &mut self,
        source: &mut dyn ReadSeek,
        depth: u32,
        name: &str,
    ) -> Result<(), Stop> {
        let archive_name = which(name);
        let memory_kb = usize::try_from(DECODER_MEMORY_LIMIT / 1024).unwrap_or(usize::MAX);
        let mut reader = ArchiveReader::new_with_memory_limit(source, Password::empty(), memory_kb)
            .map_err(|e| self.sevenz_error(e, &archive_name))?;
        reader.set_thread_count(1);

        let archive = reader.archive();
        for (index, file) in archive.files.iter().enumerate() {
            let member = join(name, file.name.as_bytes());
            self.count_member(&member)?;
            if archive.is_file_encrypted(index) {
                return Err(ArchiveFinding::new(
                    Finding::Encrypted,
                    format!("member {member} is encrypted (7z AES)"),
                )
                .into());
            }
            self.caps.check_member(&member, file.size, None)?;
        }

        let mut stopped: Option<Stop> = None;
        let outcome = reader.for_each_entries(|entry, data| {
            if entry.is_directory || !entry.has_stream {
                return Ok(true);
            }
            let member = join(name, entry.name.as_bytes());
            // Solid blocks have no per-member compressed size: the whole archive's ratio
            // still applies.
            let mut capped =
                MemberReader::new(self, data, &member, Some(entry.size), Compressed::Unknown);
            match self
                .member_content(&member, depth, &mut capped)
                .and_then(|()| capped.finish())
            {
                Ok(()) => Ok(true),
                Err(stop) => {
                    stopped = Some(stop);
                    Err(Error::Other("judging stopped".into()))
                }
            }
        });
        if let Some(stop) = stopped {
            return Err(stop);
        }
        outcome.map_err(|e| self.sevenz_error(e, &archive_name))
    }

    fn sevenz_error(&self, err: Error, archive: &str) -> Stop {
        match err {
            Error::PasswordRequired | Error::MaybeBadPassword(_) => ArchiveFinding::new(
                Finding::Encrypted,
                format!("{archive} is an encrypted 7z (headers or members)"),
            )
            .into(),
            Error::MaxMemLimited { actaul_kb, .. } => unscannable(format!(
                "{archive} needs {actaul_kb} KiB of decoder memory, past airlock's limit of {} KiB",
                DECODER_MEMORY_LIMIT / 1024
            )),
            Error::Io(e, context) => self.classify(&e, &format!("{archive} (7z) {context}")),
            Error::FileOpen(e, context) => self.classify(&e, &format!("{archive} (7z) {context}")),
            other => self.classify(&other, &format!("{archive} (7z)")),
        }
    }
}
