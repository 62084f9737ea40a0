//! airlock on one machine.
//!
//! Wires the local adapters (filesystem store, SQLite intents, in-process queues, event log),
//! a scanner, and the local executor of `statemachine/pipeline.asl.json` into a running
//! pipeline whose workers are the same code that runs on AWS; and replays fixture cases or
//! captured events through it.

pub mod bench;
pub mod bench_quarantine;
pub mod cases;
pub mod console;
pub mod dead_letters;
pub mod http_server;
pub mod lock;
pub mod media_cli;
pub mod pipeline;
pub mod replay;
pub mod review_cli;
pub mod sweep;

pub use pipeline::{EmbeddedPipeline, PipelineConfig, PipelineRun, Settlement};
