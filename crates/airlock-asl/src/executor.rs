//! The executor: starts executions, routes task tokens, and keeps execution records while
//! they run.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};

use crate::definition::Definition;
use crate::distributed::{self, MapRun};
use crate::engine;
use crate::error::{MissingHandler, StartError, TaskTokenError};
use crate::history::{
    EventDetails, Execution, ExecutionStatus, History, HistoryEvent, HistoryEventType, JsonText,
};
use crate::objects::ObjectStore;

/// What a Task state asks its handler to do.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    /// The state's `Resource`, as written (including any `.waitForTaskToken`).
    pub resource: String,
    pub state_name: String,
    pub execution_name: String,
    /// The effective input: the state input after `InputPath` and `Parameters`.
    pub parameters: Value,
    /// For `.waitForTaskToken` tasks, the token the worker must send back.
    pub task_token: Option<String>,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub attempt: u32,
}

/// A task's failure: the error name Retry and Catch match on, and a cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
}

impl TaskFailure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

/// Runs the work of Task states for one resource.
#[async_trait::async_trait]
pub trait TaskHandler: Send + Sync {
    /// Called for each attempt of a Task state. For `<base>.waitForTaskToken`
    /// resources the handler registered for `<base>` is called with `task_token` set;
    /// its return value only goes into the history (`TaskSubmitted`) and the task
    /// then waits for `send_task_success`/`send_task_failure` with that token.
    /// A returned error (or a panic, reported as `States.TaskFailed`) fails the attempt.
    ///
    /// `HeartbeatSeconds` is enforced only for `.waitForTaskToken` tasks, since only
    /// they have a token to send heartbeats with; `TimeoutSeconds` bounds every call.
    async fn invoke(&self, request: TaskRequest) -> Result<Value, TaskFailure>;
}

/// Tuning for an [`Executor`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorOptions {
    /// Multiplies Wait-state and Retry delays (1.0 = real time, 0.0 = no delay).
    /// Timeouts (`TimeoutSeconds`, `HeartbeatSeconds`, the definition's
    /// `TimeoutSeconds`) always run in real time.
    pub delay_scale: f64,
    /// Seeds the generator behind `JitterStrategy: FULL`, for reproducible runs.
    pub jitter_seed: Option<u64>,
    /// Used in `$$.StateMachine.Name` and in the ARNs of `$$.Execution.Id`/`$$.StateMachine.Id`.
    pub state_machine_name: String,
    /// Whether executions keep their event history (the default). Without it an
    /// execution's memory no longer grows with the events it records, and
    /// [`Execution::history`] stays empty.
    pub keep_history: bool,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            delay_scale: 1.0,
            jitter_seed: None,
            state_machine_name: "local".to_owned(),
            keep_history: true,
        }
    }
}

impl ExecutorOptions {
    pub(crate) fn scale(&self, delay: Duration) -> Duration {
        if self.delay_scale.is_nan() || self.delay_scale <= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(delay.as_secs_f64() * self.delay_scale).unwrap_or(Duration::MAX)
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data behind (each
    // critical section is a single insert or update), so poisoning is ignored.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a worker sent for a task token.
#[derive(Debug)]
pub(crate) enum TokenSignal {
    Answer(TokenAnswer),
    Heartbeat(tokio::time::Instant),
}

/// A worker's final word on a task token.
#[derive(Debug)]
pub(crate) enum TokenAnswer {
    Success(Value),
    Failure { error: String, cause: String },
}

/// The executions of one executor: the running ones whole, the finished ones only as a
/// name hash, so that a long-lived executor (a replay of millions of events) holds no
/// finished history and still refuses to reuse a name.
#[derive(Debug, Default)]
struct Executions {
    running: HashMap<String, ExecutionHandle>,
    finished: HashSet<[u8; 16]>,
}

/// A name's entry in [`Executions::finished`]: 128 bits of SHA-256, so a collision is out of
/// reach for any number of executions one process runs.
fn name_hash(name: &str) -> [u8; 16] {
    let digest = Sha256::digest(name.as_bytes());
    let mut hash = [0; 16];
    hash.copy_from_slice(&digest[..16]);
    hash
}

/// A task token's parts: its sequence number (16 hex digits) and a keyed tag of it (32
/// hex digits), lower case.
const TOKEN_ID_DIGITS: usize = 16;
const TOKEN_LENGTH: usize = TOKEN_ID_DIGITS + 32;

/// Task token sequence numbers are keys already unique and evenly spread in their low
/// bits, so one multiplication mixes them enough for the table.
#[derive(Debug, Default, Clone, Copy)]
struct TokenIdHasher(u64);

impl std::hash::Hasher for TokenIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type TokenTable = HashMap<u64, OpenToken, std::hash::BuildHasherDefault<TokenIdHasher>>;

/// A task waiting for its token.
#[derive(Debug)]
struct OpenToken {
    tag: [u8; 16],
    answer: oneshot::Sender<TokenAnswer>,
    /// When the worker last sent a heartbeat; the waiting task reads it only when its
    /// heartbeat deadline comes, so a heartbeat wakes nothing.
    last_heartbeat: Option<tokio::time::Instant>,
}

/// A task token as issued: its text, number and tag.
pub(crate) struct IssuedToken {
    pub(crate) text: String,
    pub(crate) id: u64,
    tag: [u8; 16],
}

/// What a task finds when one of its deadlines comes.
pub(crate) enum Lapse {
    /// The token was answered first: the answer is waiting in the receiver.
    Answered,
    /// A heartbeat moved the heartbeat deadline to this instant.
    Extended(tokio::time::Instant),
    /// The token is now closed, and the task timed out.
    Expired,
}

/// State shared by all executions of one executor.
#[derive(Debug)]
pub(crate) struct Registry {
    executions: Mutex<Executions>,
    /// Open task tokens only, by sequence number: a closed token is removed, and
    /// recognised afterwards by its tag (see [`Registry::new_token`]).
    tokens: Mutex<TokenTable>,
    /// The next task token's sequence number.
    next_token: AtomicU64,
    /// Key of the tags that make tokens unguessable and self-checking, drawn once from
    /// the operating system's generator.
    token_key: [u8; 16],
    pub(crate) rng: Mutex<fastrand::Rng>,
}

impl Registry {
    fn new(rng: fastrand::Rng) -> Self {
        Self {
            executions: Mutex::new(Executions::default()),
            tokens: Mutex::new(TokenTable::default()),
            next_token: AtomicU64::new(0),
            token_key: *uuid::Uuid::new_v4().as_bytes(),
            rng: Mutex::new(rng),
        }
    }

    fn token_tag(&self, id: u64) -> [u8; 16] {
        let mut hasher = Sha256::new();
        hasher.update(self.token_key);
        hasher.update(id.to_le_bytes());
        let mut tag = [0; 16];
        tag.copy_from_slice(&hasher.finalize()[..16]);
        tag
    }

    /// A fresh task token: a sequence number and a keyed tag of it (the first 128 bits of
    /// SHA-256 over a secret key and the number). Without the key no tag can be made, so
    /// tokens cannot be guessed; and once a token is closed and forgotten, an answer for
    /// it is still told apart ("timed out") from one for a token never issued ("does not
    /// exist") without keeping every token ever issued.
    pub(crate) fn new_token(&self) -> IssuedToken {
        let id = self.next_token.fetch_add(1, Ordering::Relaxed);
        let tag = self.token_tag(id);
        let mut text = [0; TOKEN_LENGTH];
        hex::encode_to_slice(id.to_be_bytes(), &mut text[..TOKEN_ID_DIGITS])
            .expect("16 hex digits hold 8 bytes");
        hex::encode_to_slice(tag, &mut text[TOKEN_ID_DIGITS..])
            .expect("32 hex digits hold 16 bytes");
        let text = String::from_utf8(text.to_vec()).expect("hex digits are ASCII");
        IssuedToken { text, id, tag }
    }

    /// A token's number and tag, if it has the shape of one this executor issues.
    fn parse_token(token: &str) -> Option<(u64, [u8; 16])> {
        let well_formed = token.len() == TOKEN_LENGTH
            && token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return None;
        }
        let mut id = [0; 8];
        let mut tag = [0; 16];
        hex::decode_to_slice(&token[..TOKEN_ID_DIGITS], &mut id).ok()?;
        hex::decode_to_slice(&token[TOKEN_ID_DIGITS..], &mut tag).ok()?;
        Some((u64::from_be_bytes(id), tag))
    }

    /// Whether this executor issued the token with number `id` and tag `tag`.
    fn issued_here(&self, id: u64, tag: &[u8; 16]) -> bool {
        id < self.next_token.load(Ordering::Relaxed) && self.token_tag(id) == *tag
    }

    /// Makes `token` valid; its answer arrives on the returned receiver.
    pub(crate) fn open_token(&self, token: &IssuedToken) -> oneshot::Receiver<TokenAnswer> {
        let (sender, receiver) = oneshot::channel();
        lock(&self.tokens).insert(
            token.id,
            OpenToken {
                tag: token.tag,
                answer: sender,
                last_heartbeat: None,
            },
        );
        receiver
    }

    /// Closes the token with number `id`. Returns `false` if it was already closed, i.e.
    /// a success or failure was sent first and is waiting in the receiver.
    pub(crate) fn close_token(&self, id: u64) -> bool {
        lock(&self.tokens).remove(&id).is_some()
    }

    /// At a deadline of the task waiting on token `id`: for the heartbeat deadline
    /// (`heartbeat` given), a heartbeat since may extend it; otherwise the token closes.
    pub(crate) fn lapse(
        &self,
        id: u64,
        heartbeat: Option<Duration>,
        now: tokio::time::Instant,
    ) -> Lapse {
        let mut tokens = lock(&self.tokens);
        let Some(open) = tokens.get(&id) else {
            return Lapse::Answered;
        };
        if let (Some(interval), Some(at)) = (heartbeat, open.last_heartbeat)
            && at + interval > now
        {
            return Lapse::Extended(at + interval);
        }
        tokens.remove(&id);
        Lapse::Expired
    }

    fn signal(&self, token: &str, signal: TokenSignal) -> Result<(), TaskTokenError> {
        let Some((id, tag)) = Self::parse_token(token) else {
            return Err(TaskTokenError::TaskDoesNotExist);
        };
        let mut tokens = lock(&self.tokens);
        let open = match tokens.entry(id) {
            Entry::Occupied(open) if open.get().tag == tag => open,
            _ => {
                drop(tokens);
                return Err(if self.issued_here(id, &tag) {
                    TaskTokenError::TaskTimedOut
                } else {
                    TaskTokenError::TaskDoesNotExist
                });
            }
        };
        match signal {
            TokenSignal::Heartbeat(at) => {
                if open.get().answer.is_closed() {
                    // The waiting task is gone (its execution ended).
                    open.remove();
                    return Err(TaskTokenError::TaskTimedOut);
                }
                let mut open = open;
                open.get_mut().last_heartbeat = Some(at);
                Ok(())
            }
            TokenSignal::Answer(answer) => open
                .remove()
                .answer
                .send(answer)
                // The waiting task is gone (its execution ended).
                .map_err(|_| TaskTokenError::TaskTimedOut),
        }
    }

    /// Forgets a finished execution's record, keeping its name's hash so the name stays
    /// taken. Handles already given out keep the record alive for their holders.
    pub(crate) fn retire(&self, name: &str) {
        let mut executions = lock(&self.executions);
        executions.running.remove(name);
        executions.finished.insert(name_hash(name));
    }
}

/// Closes a task token when the task stops waiting for it, however that happens.
pub(crate) struct TokenGuard<'r> {
    pub(crate) registry: &'r Registry,
    pub(crate) id: u64,
}

impl Drop for TokenGuard<'_> {
    fn drop(&mut self) {
        self.registry.close_token(self.id);
    }
}

/// Mutable part of an execution record.
#[derive(Debug)]
struct ExecutionRecord {
    status: ExecutionStatus,
    output: Option<Value>,
    error: Option<String>,
    cause: Option<String>,
    stopped_at: Option<DateTime<Utc>>,
    history: History,
    /// Events recorded so far (kept in `history` or not).
    events: u64,
}

/// An execution's record, shared between its task and every handle.
#[derive(Debug)]
pub(crate) struct ExecutionShared {
    pub(crate) name: String,
    pub(crate) input: Value,
    pub(crate) started_at: DateTime<Utc>,
    record: Mutex<ExecutionRecord>,
    keep_history: bool,
    done: watch::Sender<bool>,
    pub(crate) stop: watch::Sender<Option<(Option<String>, Option<String>)>>,
    /// The Map Runs of the execution's Distributed Map states, in start order.
    pub(crate) map_runs: Mutex<Vec<MapRun>>,
}

impl ExecutionShared {
    pub(crate) fn new(name: String, input: Value, keep_history: bool) -> Self {
        Self {
            name,
            input,
            started_at: Utc::now(),
            record: Mutex::new(ExecutionRecord {
                status: ExecutionStatus::Running,
                output: None,
                error: None,
                cause: None,
                stopped_at: None,
                history: History::default(),
                events: 0,
            }),
            keep_history,
            done: watch::channel(false).0,
            stop: watch::channel(None).0,
            map_runs: Mutex::new(Vec::new()),
        }
    }

    /// The record without its history (cheap for the results of many child executions).
    pub(crate) fn summary(&self) -> Execution {
        let record = lock(&self.record);
        Execution {
            name: self.name.clone(),
            status: record.status,
            input: Value::Null,
            output: record.output.clone(),
            error: record.error.clone(),
            cause: record.cause.clone(),
            started_at: self.started_at,
            stopped_at: record.stopped_at,
            history: History::default(),
        }
    }

    /// Appends an event that follows `link` in its own flow (the execution, one
    /// Parallel branch or one Map iteration) and returns its id. Like Step Functions,
    /// `previousEventId` is the event recorded just before (0 for the first state's
    /// entry); the flow link is kept apart for pairing state entries and exits.
    ///
    /// `details` is only called when the history is kept, so that an execution without
    /// history never writes its payloads' JSON text.
    pub(crate) fn emit(
        &self,
        link: u64,
        event_type: HistoryEventType,
        details: impl FnOnce() -> EventDetails,
    ) -> u64 {
        if !self.keep_history {
            let mut record = lock(&self.record);
            record.events += 1;
            let id = record.events;
            tracing::debug!(execution = %self.name, id, event = event_type.as_str(), "history event");
            return id;
        }
        // Built outside the lock, which parallel branches and Map iterations share.
        let details = details();
        let mut record = lock(&self.record);
        record.events += 1;
        let id = record.events;
        tracing::debug!(execution = %self.name, id, event = event_type.as_str(), "history event");
        let previous_event_id = if id == 2 && event_type.is_state_entered() {
            0
        } else {
            id - 1
        };
        record.history.push(HistoryEvent {
            id,
            previous_event_id,
            link,
            // Taken under the lock, so timestamps never go back as ids go up.
            timestamp: Utc::now(),
            event_type,
            details,
        });
        id
    }

    pub(crate) fn keeps_history(&self) -> bool {
        self.keep_history
    }

    pub(crate) fn is_finished(&self) -> bool {
        *self.done.borrow()
    }

    pub(crate) fn last_event_id(&self) -> u64 {
        lock(&self.record).events
    }

    /// Records the final status (with its closing event) and wakes every waiter.
    pub(crate) fn finish(
        &self,
        status: ExecutionStatus,
        output: Option<Value>,
        error: Option<String>,
        cause: Option<String>,
    ) {
        let event_type = match status {
            ExecutionStatus::Succeeded => HistoryEventType::ExecutionSucceeded,
            ExecutionStatus::Failed => HistoryEventType::ExecutionFailed,
            ExecutionStatus::TimedOut => HistoryEventType::ExecutionTimedOut,
            ExecutionStatus::Aborted | ExecutionStatus::Running => {
                HistoryEventType::ExecutionAborted
            }
        };
        let details = || match &output {
            Some(output) => EventDetails::ExecutionSucceeded {
                output: JsonText::new(output),
            },
            None => EventDetails::ExecutionError {
                error: error.clone(),
                cause: cause.clone(),
            },
        };
        let previous = self.last_event_id();
        self.emit(previous, event_type, details);
        {
            let mut record = lock(&self.record);
            record.status = status;
            record.output = output;
            record.error = error;
            record.cause = cause;
            record.stopped_at = Some(Utc::now());
        }
        tracing::info!(execution = %self.name, status = ?status, "execution finished");
        self.done.send_replace(true);
    }

    fn snapshot(&self) -> Execution {
        let record = lock(&self.record);
        Execution {
            name: self.name.clone(),
            status: record.status,
            input: self.input.clone(),
            output: record.output.clone(),
            error: record.error.clone(),
            cause: record.cause.clone(),
            started_at: self.started_at,
            stopped_at: record.stopped_at,
            history: record.history.clone(),
        }
    }
}

/// A handle on a started execution; clones refer to the same execution.
#[derive(Debug, Clone)]
pub struct ExecutionHandle {
    shared: Arc<ExecutionShared>,
}

impl ExecutionHandle {
    pub(crate) fn new(shared: Arc<ExecutionShared>) -> Self {
        Self { shared }
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The Map Runs the execution's Distributed Map states started (one per attempt), in
    /// start order. Each lists its child executions, whose histories stay readable for as
    /// long as this handle lives.
    #[must_use]
    pub fn map_runs(&self) -> Vec<MapRun> {
        lock(&self.shared.map_runs).clone()
    }

    /// The execution as it is now (status `Running` until it ends).
    #[must_use]
    pub fn describe(&self) -> Execution {
        self.shared.snapshot()
    }

    /// Waits for the execution to end and returns its final record.
    pub async fn wait(&self) -> Execution {
        let mut done = self.shared.done.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close while we wait.
        let _ = done.wait_for(|finished| *finished).await;
        self.shared.snapshot()
    }

    /// Asks a running execution to stop; it ends `Aborted` with the given error and
    /// cause. Returns `false` if it had already ended.
    pub fn stop(&self, error: Option<&str>, cause: Option<&str>) -> bool {
        if self.shared.is_finished() {
            return false;
        }
        self.shared
            .stop
            .send_replace(Some((error.map(str::to_owned), cause.map(str::to_owned))));
        true
    }
}

/// Runs executions of one definition with a set of task handlers.
///
/// Methods take `&self` once handlers are registered, so share it as `Arc<Executor>`.
pub struct Executor {
    definition: Arc<Definition>,
    handlers: Arc<HashMap<String, Arc<dyn TaskHandler>>>,
    options: Arc<ExecutorOptions>,
    registry: Arc<Registry>,
    object_store: Option<Arc<dyn ObjectStore>>,
    /// [`Executor::validate`]'s answer, worked out once: handlers and the store change
    /// only through `&mut self`, which clears it.
    validated: OnceLock<Result<(), MissingHandler>>,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut handlers: Vec<&String> = self.handlers.keys().collect();
        handlers.sort();
        f.debug_struct("Executor")
            .field("start_at", &self.definition.start_at())
            .field("handlers", &handlers)
            .field("options", &self.options)
            .field("object_store", &self.object_store.is_some())
            .finish_non_exhaustive()
    }
}

impl Executor {
    #[must_use]
    pub fn new(definition: Definition, options: ExecutorOptions) -> Self {
        let rng = options
            .jitter_seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Self {
            definition: Arc::new(definition),
            handlers: Arc::new(HashMap::new()),
            options: Arc::new(options),
            registry: Arc::new(Registry::new(rng)),
            object_store: None,
            validated: OnceLock::new(),
        }
    }

    /// Sets the store that serves the `ItemReader` (`s3:getObject`, `s3:listObjectsV2`) and
    /// `ResultWriter` (`s3:putObject`) of Distributed Map states. Executions already
    /// running keep the store they started with.
    pub fn set_object_store(&mut self, store: Arc<dyn ObjectStore>) -> &mut Self {
        self.object_store = Some(store);
        self.validated = OnceLock::new();
        self
    }

    /// Builder-style [`set_object_store`](Self::set_object_store).
    #[must_use]
    pub fn with_object_store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.set_object_store(store);
        self
    }

    /// Registers the handler for Task states whose resource is `resource_base`
    /// (or `resource_base.waitForTaskToken`). Executions already running keep the
    /// handlers they started with.
    pub fn register(&mut self, resource_base: &str, handler: Arc<dyn TaskHandler>) -> &mut Self {
        Arc::make_mut(&mut self.handlers).insert(resource_base.to_owned(), handler);
        self.validated = OnceLock::new();
        self
    }

    /// Builder-style [`register`](Self::register).
    #[must_use]
    pub fn with_handler(mut self, resource_base: &str, handler: Arc<dyn TaskHandler>) -> Self {
        self.register(resource_base, handler);
        self
    }

    /// Checks that every Task resource has a handler, and that an object store is set
    /// when a Distributed Map reads or writes objects (reported as a missing handler for
    /// its `s3:` resource); `start_execution` also does.
    pub fn validate(&self) -> Result<(), MissingHandler> {
        self.validated.get_or_init(|| self.check_handlers()).clone()
    }

    fn check_handlers(&self) -> Result<(), MissingHandler> {
        for task in self.definition.task_resources() {
            if !self.handlers.contains_key(&task.handler_key) {
                return Err(MissingHandler {
                    state: task.state,
                    resource: task.handler_key,
                });
            }
        }
        if self.object_store.is_none()
            && let Some((state, resource)) = distributed::object_resources(&self.definition.machine)
                .into_iter()
                .next()
        {
            return Err(MissingHandler {
                state,
                resource: resource.to_owned(),
            });
        }
        Ok(())
    }

    #[must_use]
    pub fn definition(&self) -> &Definition {
        &self.definition
    }

    #[must_use]
    pub fn options(&self) -> &ExecutorOptions {
        &self.options
    }

    /// Starts an execution on the current tokio runtime. Like Step Functions (standard
    /// workflows), starting the same name again with an identical input while the
    /// execution runs returns it instead of a new one; a different input, or any input
    /// once the execution has finished, is refused with
    /// [`StartError::ExecutionAlreadyExists`]. Finished executions are not kept: only a
    /// 16-byte hash of their name is, so the executor's memory grows by that much per
    /// execution, whatever the histories held.
    pub fn start_execution(&self, name: &str, input: Value) -> Result<ExecutionHandle, StartError> {
        validate_execution_name(name)?;
        self.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let mut executions = lock(&self.registry.executions);
        if let Some(existing) = executions.running.get(name) {
            // Finished, though not yet moved to the finished names: closed all the same.
            return if existing.shared.input == input && !existing.shared.is_finished() {
                Ok(existing.clone())
            } else {
                Err(StartError::ExecutionAlreadyExists(name.to_owned()))
            };
        }
        if executions.finished.contains(&name_hash(name)) {
            return Err(StartError::ExecutionAlreadyExists(name.to_owned()));
        }
        let shared = Arc::new(ExecutionShared::new(
            name.to_owned(),
            input,
            self.options.keep_history,
        ));
        let handle = ExecutionHandle {
            shared: Arc::clone(&shared),
        };
        executions.running.insert(name.to_owned(), handle.clone());
        drop(executions);
        tracing::info!(execution = name, "execution started");
        let run = Arc::new(engine::Run {
            definition: Arc::clone(&self.definition),
            handlers: Arc::clone(&self.handlers),
            options: Arc::clone(&self.options),
            registry: Arc::clone(&self.registry),
            object_store: self.object_store.clone(),
            execution: shared,
        });
        runtime.spawn(engine::run_execution(run));
        Ok(handle)
    }

    /// The running execution with this name, if there is one. (A finished execution's
    /// record belongs to the handles given out for it.)
    #[must_use]
    pub fn execution(&self, name: &str) -> Option<ExecutionHandle> {
        lock(&self.registry.executions)
            .running
            .get(name)
            .filter(|handle| !handle.shared.is_finished())
            .cloned()
    }

    /// Whether an execution with this name ran to its end.
    #[must_use]
    pub fn has_finished(&self, name: &str) -> bool {
        let executions = lock(&self.registry.executions);
        executions
            .running
            .get(name)
            .is_some_and(|handle| handle.shared.is_finished())
            || executions.finished.contains(&name_hash(name))
    }

    /// The executions running now (and any that finished a moment ago and are being retired), oldest first.
    #[must_use]
    pub fn executions(&self) -> Vec<ExecutionHandle> {
        let mut all: Vec<ExecutionHandle> = lock(&self.registry.executions)
            .running
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|h| h.shared.started_at);
        all
    }

    /// Completes a `.waitForTaskToken` task with `output` as its result.
    pub fn send_task_success(&self, token: &str, output: Value) -> Result<(), TaskTokenError> {
        self.registry
            .signal(token, TokenSignal::Answer(TokenAnswer::Success(output)))
    }

    /// Fails a `.waitForTaskToken` task with the given error name and cause.
    pub fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), TaskTokenError> {
        self.registry.signal(
            token,
            TokenSignal::Answer(TokenAnswer::Failure {
                error: error.to_owned(),
                cause: cause.to_owned(),
            }),
        )
    }

    /// Restarts the `HeartbeatSeconds` clock of a `.waitForTaskToken` task.
    pub fn send_task_heartbeat(&self, token: &str) -> Result<(), TaskTokenError> {
        self.registry
            .signal(token, TokenSignal::Heartbeat(tokio::time::Instant::now()))
    }
}

fn validate_execution_name(name: &str) -> Result<(), StartError> {
    let invalid = |why| Err(StartError::InvalidName(name.to_owned(), why));
    if name.is_empty() || name.chars().count() > 80 {
        return invalid("must be 1 to 80 characters long");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("must not contain whitespace or control characters");
    }
    if name.chars().any(|c| "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)) {
        return invalid(
            "must not contain brackets, wildcards or any of \" # % \\ ^ | ~ ` $ & , ; : /",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_names_follow_aws_rules() {
        assert!(validate_execution_name("upload-123_abc.def").is_ok());
        for bad in ["", "has space", "a/b", "star*", "x:y", &"n".repeat(81)] {
            assert!(
                matches!(
                    validate_execution_name(bad),
                    Err(StartError::InvalidName(..))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn delay_scale_multiplies_and_never_panics() {
        let options = |scale| ExecutorOptions {
            delay_scale: scale,
            ..ExecutorOptions::default()
        };
        assert_eq!(
            options(0.5).scale(Duration::from_secs(4)),
            Duration::from_secs(2)
        );
        assert_eq!(options(0.0).scale(Duration::from_secs(4)), Duration::ZERO);
        assert_eq!(options(-1.0).scale(Duration::from_secs(4)), Duration::ZERO);
        assert_eq!(
            options(f64::NAN).scale(Duration::from_secs(4)),
            Duration::ZERO
        );
        assert_eq!(options(1e300).scale(Duration::from_secs(4)), Duration::MAX);
    }

    #[test]
    fn tokens_report_unknown_and_closed() {
        let registry = Registry::new(fastrand::Rng::with_seed(0));
        let success = |value| TokenSignal::Answer(TokenAnswer::Success(value));
        assert_eq!(
            registry.signal("nope", success(Value::Null)),
            Err(TaskTokenError::TaskDoesNotExist)
        );
        let issued = registry.new_token();
        let (t, id) = (issued.text.clone(), issued.id);
        assert_ne!(t, registry.new_token().text);
        assert_eq!(t.len(), TOKEN_LENGTH);
        let mut receiver = registry.open_token(&issued);
        // An open token's number with a forged tag is not that token.
        let forged = format!("{}{}", &t[..TOKEN_ID_DIGITS], "0".repeat(32));
        assert_eq!(
            registry.signal(&forged, success(Value::Null)),
            Err(TaskTokenError::TaskDoesNotExist)
        );
        let at = tokio::time::Instant::now();
        registry.signal(&t, TokenSignal::Heartbeat(at)).unwrap();
        assert!(matches!(
            registry.lapse(id, Some(Duration::from_secs(5)), at),
            Lapse::Extended(until) if until == at + Duration::from_secs(5)
        ));
        registry.signal(&t, success(Value::Bool(true))).unwrap();
        assert_eq!(
            registry.signal(&t, success(Value::Null)),
            Err(TaskTokenError::TaskTimedOut)
        );
        // Closed tokens are forgotten; one with a forged tag was never issued, nor was
        // one with a number not yet given out or in capitals.
        assert!(lock(&registry.tokens).is_empty());
        assert_eq!(
            registry.signal(&forged, success(Value::Null)),
            Err(TaskTokenError::TaskDoesNotExist)
        );
        let later = registry.new_token().text;
        assert_eq!(
            registry.signal(&later.to_uppercase(), success(Value::Null)),
            Err(TaskTokenError::TaskDoesNotExist)
        );
        assert!(matches!(
            receiver.try_recv(),
            Ok(TokenAnswer::Success(Value::Bool(true)))
        ));
        // Already closed by the success, so a timeout must read the answer instead.
        assert!(!registry.close_token(id));
        assert!(matches!(registry.lapse(id, None, at), Lapse::Answered));
    }

    #[tokio::test]
    async fn a_token_lapses_without_a_heartbeat_and_then_is_timed_out() {
        let registry = Registry::new(fastrand::Rng::with_seed(0));
        let issued = registry.new_token();
        let (t, id) = (issued.text.clone(), issued.id);
        let receiver = registry.open_token(&issued);
        let now = tokio::time::Instant::now();
        assert!(matches!(
            registry.lapse(id, Some(Duration::from_secs(5)), now),
            Lapse::Expired
        ));
        assert_eq!(
            registry.signal(&t, TokenSignal::Heartbeat(now)),
            Err(TaskTokenError::TaskTimedOut)
        );
        drop(receiver);
    }
}
