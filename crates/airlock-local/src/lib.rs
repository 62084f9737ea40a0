//! airlock's adapters for running on one machine: a filesystem object store confined to its
//! root, a SQLite intent store with conditional state changes, an in-process queue, an
//! event log in JSON lines, and for quarantine review an index of the quarantine records, a
//! hash-chained audit trail and encrypted sample exports.

mod audit;
mod events;
mod export;
mod fs_store;
mod group_commit;
mod quarantine_index;
mod queue;
mod sqlite_intents;

pub use audit::SqliteAuditTrail;
pub use events::JsonlEventSink;
pub use export::{EXPORT_PASSWORD, EncryptedZipFile};
pub use fs_store::FsStore;
pub use quarantine_index::{LocalQuarantine, RACY_WINDOW};
pub use queue::{DeadLetter, InProcessQueue, QueueMessage};
pub use sqlite_intents::{SqliteIntentStore, StoredDeadLetter};
