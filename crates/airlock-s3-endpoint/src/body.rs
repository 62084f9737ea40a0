//! Request bodies read as a stream, counted and hashed on the way, and judged at their end:
//! a body of another length than declared, or whose checksum (header or trailer) or
//! `Content-MD5` does not match, fails as a read error, so the store puts nothing in place.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use base64::Engine as _;
use bytes::{Buf as _, Bytes};
use futures_core::Stream;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
use s3s::dto::{ChecksumAlgorithm, StreamingBlob};
use s3s::{S3Error, S3ErrorCode, TrailingHeaders};
use tokio::io::{AsyncRead, ReadBuf};

/// The checksums a request announced, base64 as S3 takes them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Announced {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    /// `x-amz-sdk-checksum-algorithm`: its value may come in a trailer.
    pub algorithm: Option<ChecksumAlgorithm>,
    pub content_md5: Option<String>,
}

/// What a fully read, verified body was.
#[derive(Debug)]
pub(crate) struct Received {
    pub md5: [u8; 16],
    /// The checksums computed (those announced, by value or by algorithm).
    pub checksums: s3s::dto::Checksum,
}

/// A body checked as it is read. After a read error, [`Self::failure`] says what was wrong
/// in S3's terms; after the end, [`Self::received`] holds the digests.
pub(crate) struct VerifiedBody {
    stream: StreamingBlob,
    pending: Bytes,
    declared: u64,
    count: u64,
    md5: Option<Md5>,
    hasher: Option<ChecksumHasher>,
    announced: Announced,
    trailers: Option<TrailingHeaders>,
    failure: Option<S3Error>,
    received: Option<Received>,
}

impl VerifiedBody {
    pub(crate) fn new(
        stream: StreamingBlob,
        declared: u64,
        announced: Announced,
        trailers: Option<TrailingHeaders>,
    ) -> Result<Self, S3Error> {
        let mut hasher = ChecksumHasher::default();
        let algorithm = announced.algorithm.as_ref().map(ChecksumAlgorithm::as_str);
        let wants = |value: &Option<String>, name: &str| value.is_some() || algorithm == Some(name);
        if wants(&announced.crc32, ChecksumAlgorithm::CRC32) {
            hasher.crc32 = Some(Crc32::default());
        }
        if wants(&announced.crc32c, ChecksumAlgorithm::CRC32C) {
            hasher.crc32c = Some(Crc32c::default());
        }
        if wants(&announced.crc64nvme, ChecksumAlgorithm::CRC64NVME) {
            hasher.crc64nvme = Some(Crc64Nvme::default());
        }
        if wants(&announced.sha1, ChecksumAlgorithm::SHA1) {
            hasher.sha1 = Some(Sha1::default());
        }
        if wants(&announced.sha256, ChecksumAlgorithm::SHA256) {
            hasher.sha256 = Some(Sha256::default());
        }
        if let Some(name) = algorithm
            && ![
                ChecksumAlgorithm::CRC32,
                ChecksumAlgorithm::CRC32C,
                ChecksumAlgorithm::CRC64NVME,
                ChecksumAlgorithm::SHA1,
                ChecksumAlgorithm::SHA256,
            ]
            .contains(&name)
        {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                format!("unknown checksum algorithm {name:?}"),
            ));
        }
        Ok(Self {
            stream,
            pending: Bytes::new(),
            declared,
            count: 0,
            md5: Some(Md5::new()),
            hasher: Some(hasher),
            announced,
            trailers,
            failure: None,
            received: None,
        })
    }

    /// Why reading failed, if it did.
    pub(crate) fn failure(&mut self) -> Option<S3Error> {
        self.failure.take()
    }

    /// The digests of a body read to its end and verified.
    pub(crate) fn received(&mut self) -> Option<Received> {
        self.received.take()
    }

    fn fail(&mut self, err: S3Error) -> Poll<io::Result<()>> {
        let message = err
            .message()
            .map_or_else(|| err.code().as_str().to_owned(), str::to_owned);
        self.failure = Some(err);
        Poll::Ready(Err(io::Error::other(message)))
    }

    /// Judges the body at its end: its length, then each checksum given.
    fn finish(&mut self) -> Result<(), S3Error> {
        if self.count != self.declared {
            return Err(S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                format!(
                    "the body has {} bytes, the request declared {}",
                    self.count, self.declared
                ),
            ));
        }
        let md5: [u8; 16] = self.md5.take().map(Md5::finalize).unwrap_or_default();
        if let Some(expected) = &self.announced.content_md5 {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(expected)
                .ok()
                .filter(|d| d.len() == 16)
                .ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidDigest,
                        format!("Content-MD5 {expected:?} is not the base64 of 16 bytes"),
                    )
                })?;
            if decoded != md5 {
                return Err(S3Error::with_message(
                    S3ErrorCode::BadDigest,
                    "The Content-MD5 you specified did not match what was received.",
                ));
            }
        }
        // Values sent as trailers (aws-chunked bodies) are known only now.
        if let Some(trailers) = self.trailers.as_ref().and_then(TrailingHeaders::take) {
            let value = |name: &str| {
                trailers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let a = &mut self.announced;
            a.crc32 = a.crc32.take().or_else(|| value("x-amz-checksum-crc32"));
            a.crc32c = a.crc32c.take().or_else(|| value("x-amz-checksum-crc32c"));
            a.crc64nvme = a
                .crc64nvme
                .take()
                .or_else(|| value("x-amz-checksum-crc64nvme"));
            a.sha1 = a.sha1.take().or_else(|| value("x-amz-checksum-sha1"));
            a.sha256 = a.sha256.take().or_else(|| value("x-amz-checksum-sha256"));
        }
        let computed = self.hasher.take().unwrap_or_default().finalize();
        let pairs = [
            ("CRC32", &self.announced.crc32, &computed.checksum_crc32),
            ("CRC32C", &self.announced.crc32c, &computed.checksum_crc32c),
            (
                "CRC64NVME",
                &self.announced.crc64nvme,
                &computed.checksum_crc64nvme,
            ),
            ("SHA1", &self.announced.sha1, &computed.checksum_sha1),
            ("SHA256", &self.announced.sha256, &computed.checksum_sha256),
        ];
        for (name, announced, computed) in pairs {
            if let Some(announced) = announced
                && Some(announced) != computed.as_ref()
            {
                return Err(S3Error::with_message(
                    S3ErrorCode::BadDigest,
                    format!(
                        "The {name} you specified ({announced}) did not match the calculated checksum ({}).",
                        computed.as_deref().unwrap_or("none")
                    ),
                ));
            }
        }
        self.received = Some(Received {
            md5,
            checksums: computed,
        });
        Ok(())
    }
}

/// An error of the body stream: s3s's own (a bad chunk signature, say) as it is, anything
/// else (the client went away) as a body cut short.
fn stream_error(err: &(dyn std::error::Error + Send + Sync + 'static)) -> S3Error {
    if let Some(s3) = err.downcast_ref::<S3Error>() {
        let mut copy = S3Error::new(s3.code().clone());
        if let Some(message) = s3.message() {
            copy.set_message(message.to_owned());
        }
        return copy;
    }
    S3Error::with_message(
        S3ErrorCode::IncompleteBody,
        format!("the request body could not be read to its end: {err}"),
    )
}

impl AsyncRead for VerifiedBody {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.failure.is_some() {
            return Poll::Ready(Err(io::Error::other("the request body was refused")));
        }
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.received.is_some() || this.md5.is_none() {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.stream).poll_next(cx)) {
                Some(Ok(chunk)) => {
                    this.count += chunk.len() as u64;
                    if this.count > this.declared {
                        return this.fail(S3Error::with_message(
                            S3ErrorCode::IncompleteBody,
                            format!(
                                "the body is longer than the {} bytes the request declared",
                                this.declared
                            ),
                        ));
                    }
                    if let Some(md5) = &mut this.md5 {
                        md5.update(&chunk);
                    }
                    if let Some(hasher) = &mut this.hasher {
                        hasher.update(&chunk);
                    }
                    this.pending = chunk;
                }
                Some(Err(err)) => return this.fail(stream_error(err.as_ref())),
                None => {
                    return match this.finish() {
                        Ok(()) => Poll::Ready(Ok(())),
                        Err(err) => this.fail(err),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use sha2::{Digest as _, Sha256 as Sha256Hasher};

    use super::*;

    struct Chunks(VecDeque<Bytes>);

    impl Stream for Chunks {
        type Item = io::Result<Bytes>;

        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn blob(chunks: &[&[u8]]) -> StreamingBlob {
        StreamingBlob::wrap(Chunks(
            chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
        ))
    }

    async fn read(
        chunks: &[&[u8]],
        declared: u64,
        announced: Announced,
    ) -> Result<(Vec<u8>, Received), S3Error> {
        let mut body = VerifiedBody::new(blob(chunks), declared, announced, None)?;
        let mut out = Vec::new();
        match tokio::io::copy(&mut body, &mut out).await {
            Ok(_) => Ok((out, body.received().unwrap())),
            Err(_) => Err(body.failure().unwrap()),
        }
    }

    fn sha256_b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(Sha256Hasher::digest(data))
    }

    #[tokio::test]
    async fn a_body_of_the_declared_length_and_checksum_is_received() {
        let announced = Announced {
            sha256: Some(sha256_b64(b"hello world")),
            ..Announced::default()
        };
        let (bytes, received) = read(&[b"hello", b" ", b"world"], 11, announced)
            .await
            .unwrap();
        assert_eq!(bytes, b"hello world");
        assert_eq!(
            hex::encode(received.md5),
            "5eb63bbbe01eeed093cb22bb8f5acdc3"
        );
        assert_eq!(
            received.checksums.checksum_sha256,
            Some(sha256_b64(b"hello world"))
        );
    }

    #[tokio::test]
    async fn short_long_and_mismatched_bodies_fail_at_the_read() {
        let short = read(&[b"hello"], 6, Announced::default())
            .await
            .unwrap_err();
        assert_eq!(short.code(), &S3ErrorCode::IncompleteBody);
        assert!(short.message().unwrap().contains("5 bytes"), "{short:?}");
        let long = read(&[b"hello", b"!!"], 6, Announced::default())
            .await
            .unwrap_err();
        assert_eq!(long.code(), &S3ErrorCode::IncompleteBody);

        let wrong_sha = Announced {
            sha256: Some(sha256_b64(b"other")),
            ..Announced::default()
        };
        let bad = read(&[b"hello"], 5, wrong_sha).await.unwrap_err();
        assert_eq!(bad.code(), &S3ErrorCode::BadDigest);

        let wrong_md5 = Announced {
            content_md5: Some(base64::engine::general_purpose::STANDARD.encode([0u8; 16])),
            ..Announced::default()
        };
        let bad = read(&[b"hello"], 5, wrong_md5).await.unwrap_err();
        assert_eq!(bad.code(), &S3ErrorCode::BadDigest);

        let unknown = Announced {
            algorithm: Some(ChecksumAlgorithm::from("MD4".to_owned())),
            ..Announced::default()
        };
        assert!(VerifiedBody::new(blob(&[]), 0, unknown, None).is_err());
    }
}
