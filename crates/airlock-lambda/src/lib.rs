//! airlock's AWS Lambda entry points. Each is thin: it turns the Lambda event into the
//! shape the library takes and the answer back, nothing more. The binaries (`src/bin`) are
//! the functions: `sign`, `ingest` and `worker`; [`wiring`] builds their parts.

pub mod ingest;
pub mod logging;
pub mod settings;
pub mod sign;
pub mod wiring;
pub mod worker;
