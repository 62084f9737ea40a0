//! airlock's AWS Lambda entry points. Each is thin: it turns the Lambda event into the
//! shape the library takes and the answer back, nothing more.

pub mod ingest;
pub mod sign;
