//! The upload API: checks a client's request against the purpose's policy, stores the upload
//! intent, and only then signs a short-lived direct-to-S3 upload (presigned PUT, POST form or
//! multipart parts) under a key the server made; completes and aborts multipart uploads;
//! reports an upload's state with download URLs for its trusted outputs. Errors are RFC 9457
//! problems. Framework-free: [`Api::handle`] takes an HTTP request's parts, so the same code
//! serves API Gateway (through `lambda_http`) and `airlock dev`'s local server.

pub mod api;
pub mod identity;
pub mod multipart;
pub mod problem;

pub use api::{Api, ApiConfig, ApiRequest, ConfigError, UploadMethod};
pub use identity::{Caller, JwtVerifier, caller_from_claims, mint_hs256};
pub use multipart::{CompletedPart, MultipartError, MultipartUploads, SignedHttpMultipart};
pub use problem::Problem;
