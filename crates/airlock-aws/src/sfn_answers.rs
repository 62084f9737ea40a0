//! Task answers to Step Functions: `SendTaskSuccess`, `SendTaskFailure` and
//! `SendTaskHeartbeat` with the task token the worker was given.

use airlock_core::ports::{Retry, TaskAnswerError, TaskAnswers};
use async_trait::async_trait;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::http::HttpResponse;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};

use crate::error::{code_of, describe, retry_of};

/// Step Functions' limits on a failure's `error` and `cause` (characters).
const MAX_ERROR: usize = 256;
const MAX_CAUSE: usize = 32_768;

/// Answers tasks of Step Functions executions.
#[derive(Debug, Clone)]
pub struct StepFunctionsAnswers {
    client: Client,
}

impl StepFunctionsAnswers {
    /// Answers through `client` (built once by the caller).
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn answer_error<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> TaskAnswerError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // Nobody waits for the token any more (the task timed out or was answered), or it was
    // never valid: retrying cannot help.
    let retry = match code_of(err) {
        Some("TaskTimedOut" | "InvalidToken" | "TaskDoesNotExist") => Retry::Permanent,
        _ => retry_of(err),
    };
    TaskAnswerError {
        message: format!("Step Functions {operation} failed: {}", describe(err)),
        retry,
    }
}

/// `text` cut to at most `max` characters: a longer one would have the answer refused, and
/// the task would wait for its timeout.
fn at_most(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(end, _)| &text[..end])
}

#[async_trait]
impl TaskAnswers for StepFunctionsAnswers {
    async fn succeed(&self, token: &str, output: serde_json::Value) -> Result<(), TaskAnswerError> {
        self.client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
            .map(drop)
            .map_err(|e| answer_error("SendTaskSuccess", &e))
    }

    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), TaskAnswerError> {
        self.client
            .send_task_failure()
            .task_token(token)
            .error(at_most(error, MAX_ERROR))
            .cause(at_most(cause, MAX_CAUSE))
            .send()
            .await
            .map(drop)
            .map_err(|e| answer_error("SendTaskFailure", &e))
    }

    async fn heartbeat(&self, token: &str) -> Result<(), TaskAnswerError> {
        self.client
            .send_task_heartbeat()
            .task_token(token)
            .send()
            .await
            .map(drop)
            .map_err(|e| answer_error("SendTaskHeartbeat", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::at_most;

    #[test]
    fn long_texts_are_cut_on_character_boundaries() {
        assert_eq!(at_most("abc", 5), "abc");
        assert_eq!(at_most("abcdef", 3), "abc");
        assert_eq!(at_most("ééé", 2), "éé");
    }
}
