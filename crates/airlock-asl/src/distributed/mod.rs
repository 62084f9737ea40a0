//! Distributed Map: `ProcessorConfig.Mode: DISTRIBUTED` Map states, whose iterations run
//! as child executions of a Map Run, with items from the state input or an object store
//! (`ItemReader`), batching (`ItemBatcher`), tolerated failures and exported results
//! (`ResultWriter`).

mod config;
mod reader;
mod run;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

pub(crate) use config::{Distributed, check_labels, parse, processor_config, refuse_in_inline_map};
pub(crate) use run::run_map_run;

use crate::definition::{StateKind, StateMachine};
use crate::executor::{ExecutionHandle, lock};

/// The account and region of the ARNs the executor makes up.
const ARN_PREFIX: &str = "arn:aws:states:local:000000000000";

/// The object store calls a definition makes: each Distributed Map state (its `>` path)
/// with its `ItemReader` and `ResultWriter` resources.
pub(crate) fn object_resources(machine: &StateMachine) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    collect_object_resources(machine, &mut out);
    out
}

fn collect_object_resources(machine: &StateMachine, out: &mut Vec<(String, &'static str)>) {
    for state in machine.states.values() {
        match &state.kind {
            StateKind::Map(map) => {
                if let Some(distributed) = &map.distributed {
                    if let Some(reader) = &distributed.reader {
                        out.push((state.display.clone(), reader.resource()));
                    }
                    if distributed
                        .writer
                        .as_ref()
                        .is_some_and(|w| w.target.is_some())
                    {
                        out.push((state.display.clone(), config::PUT_OBJECT));
                    }
                }
                collect_object_resources(&map.processor, out);
            }
            StateKind::Parallel(parallel) => {
                for branch in &parallel.branches {
                    collect_object_resources(branch, out);
                }
            }
            _ => {}
        }
    }
}

/// Lifecycle of a Map Run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MapRunStatus {
    Running,
    Succeeded,
    Failed,
    /// Its parent execution stopped (aborted or timed out) while it ran.
    Aborted,
}

/// Item counts of a Map Run, like `DescribeMapRun`'s `itemCounts` (an item of a failed
/// batch counts as failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapRunItemCounts {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Items never started because the Map Run failed first.
    pub pending: u64,
    /// Items whose results a `ResultWriter` exported.
    pub results_written: u64,
}

/// One run of a Distributed Map state: its child executions and how it went. Clones refer
/// to the same Map Run.
#[derive(Debug, Clone)]
pub struct MapRun {
    shared: Arc<MapRunShared>,
}

#[derive(Debug)]
struct MapRunShared {
    arn: String,
    state_name: String,
    label: String,
    /// `<state machine name>/<label>`: what the child executions' ARNs name.
    child_machine: String,
    execution_type: &'static str,
    started_at: DateTime<Utc>,
    record: Mutex<MapRunRecord>,
}

#[derive(Debug)]
struct MapRunRecord {
    status: MapRunStatus,
    stopped_at: Option<DateTime<Utc>>,
    executions: Vec<ExecutionHandle>,
    counts: MapRunItemCounts,
}

impl MapRun {
    fn new(
        state_machine_name: &str,
        state_name: &str,
        label: &str,
        execution_type: config::ExecutionType,
    ) -> Self {
        let child_machine = format!("{state_machine_name}/{label}");
        Self {
            shared: Arc::new(MapRunShared {
                arn: format!(
                    "{ARN_PREFIX}:mapRun:{child_machine}:{}",
                    uuid::Uuid::new_v4()
                ),
                state_name: state_name.to_owned(),
                label: label.to_owned(),
                child_machine,
                execution_type: match execution_type {
                    config::ExecutionType::Standard => "STANDARD",
                    config::ExecutionType::Express => "EXPRESS",
                },
                started_at: Utc::now(),
                record: Mutex::new(MapRunRecord {
                    status: MapRunStatus::Running,
                    stopped_at: None,
                    executions: Vec::new(),
                    counts: MapRunItemCounts::default(),
                }),
            }),
        }
    }

    /// `arn:aws:states:local:000000000000:mapRun:<state machine>/<label>:<uuid>`.
    #[must_use]
    pub fn arn(&self) -> &str {
        &self.shared.arn
    }

    /// The last part of the ARN, which also names the `ResultWriter`'s folder.
    #[must_use]
    pub fn id(&self) -> &str {
        self.shared.arn.rsplit(':').next().unwrap_or_default()
    }

    /// The Distributed Map state that started the run.
    #[must_use]
    pub fn state_name(&self) -> &str {
        &self.shared.state_name
    }

    /// The state's `Label`, or its name when it has none.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.shared.label
    }

    /// The ARN of the child executions' state machine: `…:stateMachine:<machine>/<label>`.
    #[must_use]
    pub fn state_machine_arn(&self) -> String {
        format!("{ARN_PREFIX}:stateMachine:{}", self.shared.child_machine)
    }

    /// The ARN of the child execution named `name`: `…:execution:<machine>/<label>:<name>`.
    #[must_use]
    pub fn execution_arn(&self, name: &str) -> String {
        format!(
            "{ARN_PREFIX}:execution:{}:{name}",
            self.shared.child_machine
        )
    }

    /// The `ProcessorConfig.ExecutionType` of the child executions: `STANDARD` or `EXPRESS`.
    #[must_use]
    pub fn execution_type(&self) -> &'static str {
        self.shared.execution_type
    }

    #[must_use]
    pub fn started_at(&self) -> DateTime<Utc> {
        self.shared.started_at
    }

    #[must_use]
    pub fn stopped_at(&self) -> Option<DateTime<Utc>> {
        lock(&self.shared.record).stopped_at
    }

    #[must_use]
    pub fn status(&self) -> MapRunStatus {
        lock(&self.shared.record).status
    }

    #[must_use]
    pub fn item_counts(&self) -> MapRunItemCounts {
        lock(&self.shared.record).counts
    }

    /// The child executions, in the order they started (item, or batch, order). Each
    /// child is named by a UUID, as the service names them.
    #[must_use]
    pub fn executions(&self) -> Vec<ExecutionHandle> {
        lock(&self.shared.record).executions.clone()
    }

    /// The child execution named `name`.
    #[must_use]
    pub fn execution(&self, name: &str) -> Option<ExecutionHandle> {
        lock(&self.shared.record)
            .executions
            .iter()
            .find(|e| e.name() == name)
            .cloned()
    }

    fn add_execution(&self, execution: ExecutionHandle) {
        lock(&self.shared.record).executions.push(execution);
    }

    fn update(&self, change: impl FnOnce(&mut MapRunItemCounts)) {
        change(&mut lock(&self.shared.record).counts);
    }

    /// Records the end; only the first end counts.
    fn finish(&self, status: MapRunStatus) {
        let mut record = lock(&self.shared.record);
        if record.status == MapRunStatus::Running {
            record.status = status;
            record.stopped_at = Some(Utc::now());
        }
    }

    /// Asks every child execution still running to stop.
    fn stop_executions(&self, cause: &str) {
        for execution in self.executions() {
            execution.stop(None, Some(cause));
        }
    }
}
