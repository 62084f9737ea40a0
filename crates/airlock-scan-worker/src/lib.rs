//! airlock's scan worker: the long-running process beside clamd (one container image with
//! both) that answers the state machine's scan tasks.
//!
//! - [`consumer::ScanQueueConsumer`] long-polls the scan queue, runs each task with
//!   [`Worker::handle_reported`](airlock_core::worker::Worker::handle_reported) (which
//!   heartbeats long scans and answers Step Functions), keeps the message invisible while
//!   it runs, deletes it once answered (or when nobody waits for its token any more) and
//!   leaves it for redelivery otherwise; one `airlock-emf` metric line per task. It stops
//!   polling on shutdown and finishes the tasks in flight.
//! - [`mirror::DefinitionsMirror`] copies the ClamAV databases from the private mirror
//!   bucket (laid out by `cvdupdate`: `daily.cvd`, `main.cvd`, `bytecode.cvd`, ...) into
//!   clamd's database directory; [`mirror::refresh`] then has clamd `RELOAD` and waits
//!   until it reports the new daily version. Nothing is ever fetched from ClamAV's CDN.
//! - [`config::ScanWorkerArgs`] is the configuration, from `AIRLOCK_*` variables.

pub mod config;
pub mod consumer;
pub mod mirror;
