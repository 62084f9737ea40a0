//! `.waitForTaskToken` tasks driven by a fake worker, including airlock's pipeline shape.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_asl::{
    Definition, EventDetails, ExecutionStatus, Executor, ExecutorOptions, HistoryEventType as T,
    JsonText, TaskRequest, TaskTokenError,
};
use common::{count, queue};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

const SEND_MESSAGE: &str = "arn:aws:states:::sqs:sendMessage";
const INSPECT_QUEUE: &str = "http://localhost:9324/queue/inspect";

fn pipeline_json() -> String {
    json!({"Comment":"x","StartAt":"Inspect","TimeoutSeconds":3600,"States":{
     "Inspect":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken",
       "Parameters":{"QueueUrl":"${InspectQueueUrl}","MessageBody":{"taskToken.$":"$$.Task.Token","stage":"inspect","object.$":"$.object","execution.$":"$$.Execution.Name"}},
       "TimeoutSeconds":300,"HeartbeatSeconds":60,"ResultPath":"$.inspect",
       "Retry":[{"ErrorEquals":["Airlock.Transient"],"IntervalSeconds":2,"MaxAttempts":3,"BackoffRate":2,"JitterStrategy":"FULL"},{"ErrorEquals":["States.Timeout"],"MaxAttempts":1}],
       "Catch":[{"ErrorEquals":["States.ALL"],"ResultPath":"$.inspectFailure","Next":"Quarantine"}],
       "Next":"AfterInspect"},
     "AfterInspect":{"Type":"Choice","Choices":[{"Variable":"$.inspect.outcome","StringEquals":"reject","Next":"Quarantine"}],"Default":"Done"},
     "Quarantine":{"Type":"Pass","End":true},"Done":{"Type":"Succeed"}}})
    .to_string()
}

/// The pipeline with a queue handler; the receiver plays the inspect worker's queue.
fn pipeline() -> (Arc<Executor>, UnboundedReceiver<TaskRequest>) {
    let subs = BTreeMap::from([("InspectQueueUrl".to_owned(), INSPECT_QUEUE.to_owned())]);
    let definition = Definition::parse_with_substitutions(&pipeline_json(), &subs).unwrap();
    let (handler, requests) = queue();
    let executor = Executor::new(
        definition,
        ExecutorOptions {
            delay_scale: 0.0,
            jitter_seed: Some(3),
            ..ExecutorOptions::default()
        },
    )
    .with_handler(SEND_MESSAGE, handler);
    (Arc::new(executor), requests)
}

/// What the worker reads off the queue: the token inside the message body.
fn token_of(request: &TaskRequest) -> String {
    let token = request.parameters["MessageBody"]["taskToken"]
        .as_str()
        .expect("the message carries the task token")
        .to_owned();
    assert_eq!(request.task_token.as_deref(), Some(token.as_str()));
    token
}

/// Spawns a worker that answers each message with `answer(attempt)`; returns the
/// tokens it has answered so far.
fn worker(
    executor: &Arc<Executor>,
    mut requests: UnboundedReceiver<TaskRequest>,
    answer: impl Fn(u32) -> Result<Value, (&'static str, &'static str)> + Send + 'static,
) -> Arc<Mutex<Vec<String>>> {
    let executor = Arc::clone(executor);
    let answered = Arc::new(Mutex::new(Vec::new()));
    let tokens = Arc::clone(&answered);
    // The worker holds the executor, hence the queue, so it runs until the test ends.
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let token = token_of(&request);
            match answer(request.attempt) {
                Ok(output) => executor.send_task_success(&token, output).unwrap(),
                Err((error, cause)) => executor.send_task_failure(&token, error, cause).unwrap(),
            }
            tokens.lock().unwrap().push(token);
        }
    });
    answered
}

#[tokio::test]
async fn pipeline_clean_upload_succeeds() {
    let (executor, mut requests) = pipeline();
    let handle = executor
        .start_execution("upload-1", json!({"object": {"key": "a.pdf"}}))
        .unwrap();
    let request = requests.recv().await.unwrap();
    assert_eq!(
        request.resource,
        "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    );
    assert_eq!(request.state_name, "Inspect");
    assert_eq!(request.execution_name, "upload-1");
    assert_eq!(request.attempt, 1);
    assert_eq!(request.parameters["QueueUrl"], json!(INSPECT_QUEUE));
    let body = &request.parameters["MessageBody"];
    assert_eq!(body["stage"], json!("inspect"));
    assert_eq!(body["object"], json!({"key": "a.pdf"}));
    assert_eq!(body["execution"], json!("upload-1"));
    let token = token_of(&request);
    // Answer from another task, as a real worker would.
    let answer = {
        let executor = Arc::clone(&executor);
        tokio::spawn(async move { executor.send_task_success(&token, json!({"outcome": "clean"})) })
    };
    answer.await.unwrap().unwrap();
    let execution = handle.wait().await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(
        execution.output,
        Some(json!({"object": {"key": "a.pdf"}, "inspect": {"outcome": "clean"}}))
    );
    let submitted = execution
        .history
        .iter()
        .find(|e| e.event_type == T::TaskSubmitted)
        .unwrap();
    assert_eq!(
        submitted.details,
        EventDetails::TaskOutput {
            resource_type: "sqs".into(),
            resource: "sendMessage.waitForTaskToken".into(),
            output: JsonText::new(&json!({"MessageId": "message-1"})),
        }
    );
    let types: Vec<_> = execution.history.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            T::ExecutionStarted,
            T::TaskStateEntered,
            T::TaskScheduled,
            T::TaskStarted,
            T::TaskSubmitted,
            T::TaskSucceeded,
            T::TaskStateExited,
            T::ChoiceStateEntered,
            T::ChoiceStateExited,
            T::SucceedStateEntered,
            T::SucceedStateExited,
            T::ExecutionSucceeded
        ]
    );
}

#[tokio::test]
async fn pipeline_rejected_upload_is_quarantined() {
    let (executor, requests) = pipeline();
    let worker = worker(&executor, requests, |_| {
        Ok(json!({"outcome": "reject", "reason": "eicar"}))
    });
    let execution = executor
        .start_execution("upload-2", json!({"object": {"key": "bad.exe"}}))
        .unwrap()
        .wait()
        .await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(
        execution.output,
        Some(
            json!({"object": {"key": "bad.exe"}, "inspect": {"outcome": "reject", "reason": "eicar"}})
        )
    );
    let visited: Vec<String> = execution
        .state_durations()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(visited, ["Inspect", "AfterInspect", "Quarantine"]);
    assert_eq!(worker.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn transient_failures_are_retried_with_fresh_tokens() {
    let (executor, requests) = pipeline();
    let worker = worker(&executor, requests, |attempt| {
        if attempt < 3 {
            Err(("Airlock.Transient", "clamd restarting"))
        } else {
            Ok(json!({"outcome": "clean"}))
        }
    });
    let execution = executor
        .start_execution("upload-3", json!({"object": {}}))
        .unwrap()
        .wait()
        .await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(count(&execution, T::TaskFailed), 2);
    assert_eq!(count(&execution, T::TaskSubmitted), 3);
    let tokens = worker.lock().unwrap().clone();
    assert_eq!(tokens.len(), 3);
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2] && tokens[0] != tokens[2]);
    // A token whose attempt already failed cannot be completed later.
    assert_eq!(
        executor.send_task_success(&tokens[0], json!({})),
        Err(TaskTokenError::TaskTimedOut)
    );
}

#[tokio::test]
async fn fatal_failures_are_caught_into_quarantine() {
    let (executor, requests) = pipeline();
    let _worker = worker(&executor, requests, |_| {
        Err(("Airlock.Fatal", "object vanished"))
    });
    let execution = executor
        .start_execution("upload-4", json!({"object": {"key": "k"}}))
        .unwrap()
        .wait()
        .await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(
        execution.output,
        Some(json!({
            "object": {"key": "k"},
            "inspectFailure": {"Error": "Airlock.Fatal", "Cause": "object vanished"}
        }))
    );
    assert_eq!(
        count(&execution, T::TaskFailed),
        1,
        "Airlock.Fatal is not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn missed_heartbeats_time_out_retry_once_then_quarantine() {
    let (executor, mut requests) = pipeline();
    let started = tokio::time::Instant::now();
    let handle = executor
        .start_execution("upload-5", json!({"object": {}}))
        .unwrap();
    // The worker takes the message and goes silent.
    let first = token_of(&requests.recv().await.unwrap());
    let second = token_of(&requests.recv().await.unwrap());
    let execution = handle.wait().await;
    // Two heartbeat windows of 60 s; the retry delay is scaled to zero.
    assert_eq!(started.elapsed().as_secs(), 120);
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    let failure = &execution.output.as_ref().unwrap()["inspectFailure"];
    assert_eq!(failure["Error"], json!("States.Timeout"));
    assert!(
        failure["Cause"]
            .as_str()
            .unwrap()
            .contains("HeartbeatSeconds")
    );
    assert_eq!(count(&execution, T::TaskTimedOut), 2);
    for token in [&first, &second] {
        assert_eq!(
            executor.send_task_success(token, json!({"outcome": "clean"})),
            Err(TaskTokenError::TaskTimedOut)
        );
        assert_eq!(
            executor.send_task_heartbeat(token),
            Err(TaskTokenError::TaskTimedOut)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_long_task_alive() {
    let (executor, mut requests) = pipeline();
    let handle = executor
        .start_execution("upload-6", json!({"object": {}}))
        .unwrap();
    let token = token_of(&requests.recv().await.unwrap());
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(40)).await;
        executor.send_task_heartbeat(&token).unwrap();
    }
    executor
        .send_task_success(&token, json!({"outcome": "clean"}))
        .unwrap();
    let execution = handle.wait().await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(started.elapsed().as_secs(), 200);
    assert_eq!(count(&execution, T::TaskSubmitted), 1, "no retry happened");
}

/// A one-task callback machine with the given timeouts and catchers, and its queue.
fn callback_machine(
    timeout: u64,
    heartbeat: u64,
    catch: &Value,
) -> (Arc<Executor>, UnboundedReceiver<TaskRequest>) {
    let definition = Definition::from_value(&json!({"StartAt": "Wait4Worker", "States": {
        "Wait4Worker": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token"},
            "TimeoutSeconds": timeout, "HeartbeatSeconds": heartbeat,
            "Catch": catch, "End": true},
        "Caught": {"Type": "Pass", "End": true}
    }}))
    .unwrap();
    let (handler, requests) = queue();
    let executor =
        Executor::new(definition, ExecutorOptions::default()).with_handler(SEND_MESSAGE, handler);
    (Arc::new(executor), requests)
}

#[tokio::test(start_paused = true)]
async fn task_timeout_applies_even_with_heartbeats() {
    let (executor, mut requests) = callback_machine(
        100,
        30,
        &json!([
            {"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "Caught", "ResultPath": "$.heartbeat"},
            {"ErrorEquals": ["States.Timeout"], "Next": "Caught", "ResultPath": "$.timeout"}
        ]),
    );
    let handle = executor.start_execution("busy", json!({})).unwrap();
    let token = requests.recv().await.unwrap().task_token.unwrap();
    let started = tokio::time::Instant::now();
    let heartbeats = {
        let executor = Arc::clone(&executor);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if executor.send_task_heartbeat(&token).is_err() {
                    return;
                }
            }
        })
    };
    let execution = handle.wait().await;
    assert_eq!(started.elapsed().as_secs(), 100);
    let output = execution.output.unwrap();
    assert_eq!(output["timeout"]["Error"], json!("States.Timeout"));
    assert!(
        output["timeout"]["Cause"]
            .as_str()
            .unwrap()
            .contains("TimeoutSeconds")
    );
    assert!(output.get("heartbeat").is_none());
    heartbeats.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn heartbeat_timeouts_match_states_heartbeat_timeout() {
    // The queue stays open, but no worker ever answers.
    let (executor, _requests) = callback_machine(
        100,
        30,
        &json!([{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "Caught", "ResultPath": "$.heartbeat"}]),
    );
    let started = tokio::time::Instant::now();
    let execution = executor
        .start_execution("silent", json!({}))
        .unwrap()
        .wait()
        .await;
    assert_eq!(started.elapsed().as_secs(), 30);
    assert_eq!(
        execution.output.unwrap()["heartbeat"]["Error"],
        json!("States.Timeout")
    );
}

#[tokio::test]
async fn token_misuse_is_reported() {
    let (executor, mut requests) = pipeline();
    assert_eq!(
        executor.send_task_success("no-such-token", json!({})),
        Err(TaskTokenError::TaskDoesNotExist)
    );
    assert_eq!(
        executor.send_task_heartbeat("no-such-token"),
        Err(TaskTokenError::TaskDoesNotExist)
    );
    let handle = executor
        .start_execution("upload-7", json!({"object": {}}))
        .unwrap();
    let token = token_of(&requests.recv().await.unwrap());
    executor.send_task_heartbeat(&token).unwrap();
    executor
        .send_task_failure(&token, "Airlock.Fatal", "first answer wins")
        .unwrap();
    assert_eq!(
        executor.send_task_success(&token, json!({"outcome": "clean"})),
        Err(TaskTokenError::TaskTimedOut)
    );
    let execution = handle.wait().await;
    assert_eq!(
        execution.output.unwrap()["inspectFailure"]["Cause"],
        json!("first answer wins")
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_the_handler_returns_is_kept() {
    use airlock_asl::{TaskFailure, TaskHandler};

    /// Hands the token to the worker, then takes a while to "confirm the send".
    struct SlowSend(tokio::sync::mpsc::UnboundedSender<String>);

    #[async_trait::async_trait]
    impl TaskHandler for SlowSend {
        async fn invoke(&self, request: TaskRequest) -> Result<Value, TaskFailure> {
            self.0.send(request.task_token.unwrap()).unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(json!({"sent": true}))
        }
    }

    let (sender, mut tokens) = tokio::sync::mpsc::unbounded_channel();
    let definition = Definition::from_value(&json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token"}, "HeartbeatSeconds": 2, "TimeoutSeconds": 10, "End": true}
    }}))
    .unwrap();
    let executor = Arc::new(
        Executor::new(definition, ExecutorOptions::default())
            .with_handler(SEND_MESSAGE, Arc::new(SlowSend(sender))),
    );
    let handle = executor.start_execution("fast-worker", json!({})).unwrap();
    let token = tokens.recv().await.unwrap();
    executor.send_task_success(&token, json!("early")).unwrap();
    let execution = handle.wait().await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);
    assert_eq!(execution.output, Some(json!("early")));
}

#[tokio::test(start_paused = true)]
async fn an_execution_timeout_closes_its_tokens() {
    let definition =
        Definition::from_value(&json!({"StartAt": "T", "TimeoutSeconds": 10, "States": {
            "T": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"token.$": "$$.Task.Token"}, "TimeoutSeconds": 1000, "End": true}
        }}))
        .unwrap();
    let (handler, mut requests) = queue();
    let executor =
        Executor::new(definition, ExecutorOptions::default()).with_handler(SEND_MESSAGE, handler);
    let handle = executor.start_execution("slow", json!({})).unwrap();
    let token = requests.recv().await.unwrap().task_token.unwrap();
    let execution = handle.wait().await;
    assert_eq!(execution.status, ExecutionStatus::TimedOut);
    // Give the runtime a moment to drop the cancelled task's token guard.
    tokio::task::yield_now().await;
    assert_eq!(
        executor.send_task_success(&token, json!({})),
        Err(TaskTokenError::TaskTimedOut)
    );
}
