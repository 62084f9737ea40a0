//! airlock's AWS deployment, run against the AWS emulator (`moto_server`, from
//! `moto[server]` on `PyPI`): [`Deployment`] creates the template's resources on it (versioned bucket
//! with its notification to the ingest queue, intents table, work queues, event bus, and the
//! state machine from the same `statemachine/pipeline.asl.json`, which the emulator's
//! executor runs); [`Functions`] runs the functions' own handlers (`ingest`, `worker`) and a
//! scan worker next to a real clamd, each polling its queue as the Lambda service and the
//! ECS task would; [`replay`] puts fixture cases through it all.

mod deployment;
mod functions;
mod moto;
pub mod replay;

pub use deployment::{Deployment, Names};
pub use functions::{Functions, IngestedBatch};
pub use moto::{MotoServer, configure_executor, sdk_config};
