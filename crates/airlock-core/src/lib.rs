//! airlock's domain and pipeline stages.
//!
//! This crate knows nothing of AWS or of any runtime host: it holds the upload intent and its
//! state machine, the per-purpose upload policies, the object-key scheme, the verdicts with
//! their stable reason codes, the virus definitions' freshness rule, the ports (traits) the
//! adapters implement, the parsing of storage events into object references, and the
//! stages (inspect, scan, promote, quarantine) as plain async functions over those ports.

pub mod definitions;
pub mod intake;
pub mod intent;
pub mod keys;
pub mod media;
pub mod object;
pub mod policy;
pub mod ports;
pub mod review;
pub mod stages;
pub mod verdict;
pub mod worker;
