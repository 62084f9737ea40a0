//! Presigning for direct-to-S3 uploads: `SigV4` query-string signatures for `PutObject`,
//! `UploadPart` (and the multipart create/complete calls), `GetObject`, and `SigV4` POST
//! policies for browser form uploads.
//!
//! It works against any S3 endpoint (AWS or an S3-compatible one), path-style or
//! virtual-hosted. The signing key is derived once per UTC day (four HMACs) and cached;
//! each presign after that costs one SHA-256 of the canonical request and one HMAC. The
//! clock is an argument (`now`), so results are deterministic.

mod encode;
mod presigner;

pub use presigner::{
    Addressing, Credentials, MAX_EXPIRY, PostRequest, PresignConfig, PresignError, PresignedPost,
    PresignedRequest, Presigner, PutRequest, UploadPartRequest,
};
