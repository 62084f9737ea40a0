//! Group commit for the SQLite intent store: one thread owns the connection and commits the
//! writes of concurrent callers in one transaction, so many callers share one fsync; each
//! caller is answered only after the transaction holding its write is committed.
//!
//! Every write runs in its own savepoint inside the batch's transaction: a write that fails
//! is rolled back alone and answered at once, and the others still commit. Reads run outside
//! transactions, before the batch's writes.
//!
//! The jobs of one batch were all waiting at once (none had been answered), so running them
//! in any order is an order their callers could have seen; a caller's next call, made after
//! its answer, is always in a later batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use airlock_core::ports::{IntentStoreError, Retry};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// The most jobs taken into one batch (callers beyond wait for the next).
const MAX_BATCH: usize = 512;

/// Answers a write once its transaction ended: `None` when it committed.
type Answer = Box<dyn FnOnce(Option<&IntentStoreError>) + Send>;
/// Runs a write on the connection (or learns why it cannot); answers a failed write itself
/// and returns `None`, else the answer to give after the commit.
type WriteJob = Box<dyn FnOnce(Result<&Connection, &IntentStoreError>) -> Option<Answer> + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum Job {
    Read(ReadJob),
    Write(WriteJob),
}

/// The handle callers submit work through; the thread stops once every handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    commits: Arc<AtomicU64>,
}

pub(crate) fn store_error(message: impl Into<String>, retry: Retry) -> IntentStoreError {
    IntentStoreError {
        message: message.into(),
        retry,
    }
}

fn copy(err: &IntentStoreError) -> IntentStoreError {
    store_error(err.message.clone(), err.retry)
}

fn stopped() -> IntentStoreError {
    store_error(
        "the intent store's database thread has stopped",
        Retry::Permanent,
    )
}

fn sql_error(err: &rusqlite::Error) -> IntentStoreError {
    crate::sqlite_intents::sqlite_err(err)
}

/// Runs one statement that returns no rows (cached: these run for every write).
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

impl GroupCommit {
    /// Moves `conn` to a new thread that runs the jobs.
    pub(crate) fn start(conn: Connection) -> Result<Self, IntentStoreError> {
        let (jobs, queue) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&commits);
        std::thread::Builder::new()
            .name("airlock-intents".to_owned())
            .spawn(move || serve(&conn, &queue, &counter))
            .map_err(|e| {
                store_error(
                    format!("cannot start the intent store's database thread: {e}"),
                    Retry::Permanent,
                )
            })?;
        Ok(Self { jobs, commits })
    }

    /// Transactions committed so far.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` outside any transaction.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, IntentStoreError> + Send + 'static,
    ) -> Result<T, IntentStoreError> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Job::Read(Box::new(move |conn| {
                let _ = answer.send(work(conn));
            })))
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    /// Runs `work` in a savepoint of the next batch's transaction; returns its result once
    /// that transaction is committed (or the reason it was not). A `work` that fails is rolled
    /// back alone.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, IntentStoreError> + Send + 'static,
    ) -> Result<T, IntentStoreError> {
        let (answer, answered) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| match conn.map_err(copy).and_then(work) {
            Ok(value) => Some(Box::new(move |failure: Option<&IntentStoreError>| {
                let _ = answer.send(failure.map_or(Ok(value), |e| Err(copy(e))));
            })),
            Err(err) => {
                let _ = answer.send(Err(err));
                None
            }
        });
        self.jobs.send(Job::Write(job)).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// The thread: takes every job waiting (up to [`MAX_BATCH`]), runs the reads, then commits
/// the writes together.
fn serve(conn: &Connection, queue: &mpsc::Receiver<Job>, commits: &AtomicU64) {
    let mut reads: Vec<ReadJob> = Vec::new();
    let mut writes: Vec<WriteJob> = Vec::new();
    let mut next = queue.recv().ok();
    while let Some(first) = next.take() {
        let mut job = Some(first);
        while let Some(taken) = job.take() {
            match taken {
                Job::Read(read) => reads.push(read),
                Job::Write(write) => writes.push(write),
            }
            if reads.len() + writes.len() < MAX_BATCH {
                job = queue.try_recv().ok();
            }
        }
        for read in reads.drain(..) {
            read(conn);
        }
        if !writes.is_empty() {
            commit_batch(conn, writes.drain(..), commits);
        }
        next = queue.recv().ok();
    }
}

fn begin(conn: &Connection) -> Result<(), IntentStoreError> {
    run(conn, "BEGIN IMMEDIATE").map_err(|e| sql_error(&e))
}

/// Runs the writes in one transaction, each in a savepoint, commits, then answers them.
fn commit_batch(conn: &Connection, writes: impl Iterator<Item = WriteJob>, commits: &AtomicU64) {
    let mut answers: Vec<Answer> = Vec::new();
    let mut open = begin(conn);
    for job in writes {
        if let Err(err) = &open {
            job(Err(err));
            continue;
        }
        if let Err(e) = run(conn, "SAVEPOINT write") {
            job(Err(&sql_error(&e)));
            continue;
        }
        match job(Ok(conn)) {
            Some(answer) => match run(conn, "RELEASE write") {
                Ok(()) => answers.push(answer),
                Err(e) => {
                    let _ =
                        run(conn, "ROLLBACK TO write").and_then(|()| run(conn, "RELEASE write"));
                    answer(Some(&sql_error(&e)));
                }
            },
            None => {
                let _ = run(conn, "ROLLBACK TO write").and_then(|()| run(conn, "RELEASE write"));
            }
        }
        if conn.is_autocommit() {
            // SQLite ended the transaction itself after an error (disk full, I/O error): the
            // writes so far are undone, so they fail; the rest get a new transaction.
            let undone = store_error(
                "the database rolled back the transaction after an error",
                Retry::Transient,
            );
            for answer in answers.drain(..) {
                answer(Some(&undone));
            }
            open = begin(conn);
        }
    }
    if open.is_err() {
        return;
    }
    if answers.is_empty() {
        let _ = run(conn, "ROLLBACK");
        return;
    }
    match run(conn, "COMMIT") {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            for answer in answers {
                answer(None);
            }
        }
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = run(conn, "ROLLBACK");
            }
            let err = sql_error(&e);
            for answer in answers {
                answer(Some(&err));
            }
        }
    }
}
