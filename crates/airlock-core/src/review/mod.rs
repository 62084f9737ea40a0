//! Quarantine review: what security teams do with quarantined uploads.
//!
//! The quarantine as a queryable set ([`QuarantineIndex`]), an append-only hash-chained
//! [`AuditTrail`], and the reviewer's actions as plain async functions over ports:
//! [`release`], [`purge`], [`purge_older_than`], [`rescan_quarantined`],
//! [`rescan_trusted`] and [`export`]. Every action is recorded in the audit trail with who,
//! when, why, the state before and after, and the object's SHA-256.

mod actions;
mod audit;
mod hexdump;
mod index;

pub use actions::{
    ExportReport, ItemDetail, PurgeReport, ReleaseOutcome, ReleaseReport, RescanProgress,
    RescanSummary, Rescanning, Review, ReviewError, Tombstone, describe, export, purge,
    purge_older_than, release, rescan_item, rescan_quarantined, rescan_trusted, tombstone_key,
};
pub use audit::{
    AuditAction, AuditCheck, AuditEntry, AuditError, AuditFilter, AuditRecord, AuditTrail,
    GENESIS_HASH, verify_chain,
};
pub use hexdump::hex_dump;
pub use index::{
    Checkpoints, Count, PageRequest, QuarantineCounts, QuarantineError, QuarantineFilter,
    QuarantineIndex, QuarantineItem, QuarantinePage, QuarantineStatus, SampleSink, StateChange,
    TrustedFilter, TrustedUploads,
};
