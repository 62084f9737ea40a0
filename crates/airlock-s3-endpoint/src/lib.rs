//! A local S3-compatible endpoint for `airlock dev`: clients upload with presigned URLs, POST
//! forms or multipart uploads exactly as they would to S3, and the pipeline gets the S3 event
//! notification of each object written.
//!
//! It is s3s (request parsing and `SigV4` verification: signatures, expiry, signed headers,
//! POST policies) over airlock-local's `FsStore`, for one bucket, path-style
//! (`http://127.0.0.1:PORT/{bucket}/{key}`). What it adds, as AWS does for airlock's bucket:
//!
//! - writes only under `incoming/`, reads only under `trusted/` (else `AccessDenied`);
//! - `If-None-Match: *` makes a PUT or a multipart completion create-only (a hard link,
//!   atomic): `PreconditionFailed` when the key is taken, and nothing is replaced;
//! - a body is streamed to a temporary file and put in place only once its length and every
//!   checksum it announced (`x-amz-checksum-*`, header or trailer, and `Content-MD5`) check
//!   out: on `BadDigest` or a short body nothing is stored;
//! - multipart parts live outside the store's root, are checked on completion as S3 checks
//!   them (ascending, matching ETags, 5 MiB but for the last), and are removed on completion
//!   or abort; the object's ETag is S3's (`md5 of the parts' md5s-N`);
//! - after each object written, an `ObjectCreated:Put` / `:Post` / `:CompleteMultipartUpload`
//!   notification whose `versionId` is the store's version token;
//! - CORS for the configured browser origins, preflights included.

mod body;
mod config;
mod event;
mod parts;
mod server;
mod service;

pub use config::{Credentials, DEFAULT_MAX_POST_SIZE, EndpointConfig};
pub use server::{EndpointError, EndpointHandle, serve};
