//! An in-process queue: what SQS is on AWS, for one process.
//!
//! Messages wait until a consumer takes them; a message whose handling failed for good is kept
//! as a dead letter with the reason, never dropped.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub id: u64,
    pub body: String,
    pub sent_at: DateTime<Utc>,
}

/// A message that could not be handled, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message: QueueMessage,
    pub reason: String,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<QueueMessage>,
    dead: Vec<DeadLetter>,
    next_id: u64,
    closed: bool,
}

/// A named in-process queue.
#[derive(Debug)]
pub struct InProcessQueue {
    name: String,
    state: Mutex<State>,
    available: Notify,
}

impl InProcessQueue {
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            state: Mutex::new(State::default()),
            available: Notify::new(),
        }
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-updated.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Enqueues a message and returns its id; `None` once the queue is closed.
    pub fn send(&self, body: impl Into<String>) -> Option<u64> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.next_id += 1;
        let id = state.next_id;
        state.ready.push_back(QueueMessage {
            id,
            body: body.into(),
            sent_at: Utc::now(),
        });
        drop(state);
        self.available.notify_one();
        Some(id)
    }

    /// Waits for the next message; `None` once the queue is closed and empty.
    pub async fn receive(&self) -> Option<QueueMessage> {
        loop {
            let notified = self.available.notified();
            {
                let mut state = self.lock();
                if let Some(message) = state.ready.pop_front() {
                    // Pass the wake-up on if more are waiting.
                    if !state.ready.is_empty() {
                        self.available.notify_one();
                    }
                    return Some(message);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Keeps a message that could not be handled.
    pub fn dead_letter(&self, message: QueueMessage, reason: impl Into<String>) {
        self.lock().dead.push(DeadLetter {
            message,
            reason: reason.into(),
        });
    }

    #[must_use]
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead.clone()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses new messages and wakes every waiting consumer; queued messages are still
    /// delivered.
    pub fn close(&self) {
        self.lock().closed = true;
        self.available.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn delivers_in_order_then_ends_after_close() {
        let queue = InProcessQueue::new("q");
        queue.send("a");
        queue.send("b");
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.receive().await.unwrap().body, "a");
        queue.close();
        assert!(queue.send("c").is_none());
        assert_eq!(queue.receive().await.unwrap().body, "b");
        assert!(queue.receive().await.is_none());
    }

    #[tokio::test]
    async fn wakes_waiting_consumers() {
        let queue = Arc::new(InProcessQueue::new("q"));
        let mut consumers = Vec::new();
        for _ in 0..3 {
            let queue = Arc::clone(&queue);
            consumers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(m) = queue.receive().await {
                    got.push(m.id);
                }
                got
            }));
        }
        tokio::task::yield_now().await;
        for i in 0..30 {
            queue.send(format!("{i}"));
        }
        // Let them drain, then close.
        while !queue.is_empty() {
            tokio::task::yield_now().await;
        }
        queue.close();
        let mut all: Vec<u64> = Vec::new();
        for c in consumers {
            all.extend(c.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (1..=30).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn dead_letters_are_kept() {
        let queue = InProcessQueue::new("q");
        queue.send("bad");
        let message = queue.receive().await.unwrap();
        queue.dead_letter(message, "no token");
        let dead = queue.dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, "no token");
        assert_eq!(dead[0].message.body, "bad");
    }
}
