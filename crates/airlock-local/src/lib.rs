//! airlock's adapters for running on one machine: a filesystem object store confined to its
//! root, a SQLite intent store with conditional state changes, an in-process queue, and an
//! event log in JSON lines.

mod events;
mod fs_store;
mod group_commit;
mod queue;
mod sqlite_intents;

pub use events::JsonlEventSink;
pub use fs_store::FsStore;
pub use queue::{DeadLetter, InProcessQueue, QueueMessage};
pub use sqlite_intents::{SqliteIntentStore, StoredDeadLetter};
