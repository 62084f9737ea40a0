//! `StepFunctionsAnswers` against real executions on the emulator (tasks reached through
//! SQS with a task token, as the pipeline's are), and `EventBridgeSink` through a rule
//! that forwards the bus's events to a queue.

mod common;

use std::time::Duration;

use airlock_aws::{EventBridgeSink, StepFunctionsAnswers};
use airlock_core::keys::{Purpose, TenantId, UploadId};
use airlock_core::ports::{EventSink, PipelineEvent, PipelineEventKind, Retry, TaskAnswers};
use airlock_core::verdict::ReasonCode;
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{DurationRound, Utc};
use common::Moto;
use serde_json::{Value, json};

/// A state machine whose one task sends its token to `queue_url` and waits for an answer.
/// (Once an execution waited for a token, the emulator fails to start any other: one
/// execution per emulator.)
async fn waiting_machine(moto: &Moto, queue_url: &str) -> String {
    let definition = json!({
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {
                    "QueueUrl": queue_url,
                    "MessageBody": {"token.$": "$$.Task.Token", "input.$": "$"}
                },
                "HeartbeatSeconds": 120,
                "TimeoutSeconds": 600,
                "End": true
            }
        }
    });
    moto.sfn()
        .create_state_machine()
        .name("waits")
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/airlock-pipeline")
        .send()
        .await
        .unwrap()
        .state_machine_arn
}

/// Starts an execution; its ARN and the token its task sent.
async fn start(moto: &Moto, machine: &str, queue_url: &str, input: &Value) -> (String, String) {
    let execution = moto
        .sfn()
        .start_execution()
        .state_machine_arn(machine)
        .name(uuid::Uuid::new_v4().to_string())
        .input(input.to_string())
        .send()
        .await
        .unwrap()
        .execution_arn;
    let bodies = moto.receive(queue_url, 1, 20).await;
    assert_eq!(bodies.len(), 1, "the task sent its token");
    let message: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(&message["input"], input);
    (execution, message["token"].as_str().unwrap().to_owned())
}

/// Waits until the execution is no longer running; its description.
async fn finished(
    moto: &Moto,
    execution: &str,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    for _ in 0..200 {
        let out = moto
            .sfn()
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap();
        if out.status != ExecutionStatus::Running {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {execution} still running");
}

/// An emulator running one execution that waits for a task token; the answers, the
/// execution and its token.
async fn waiting_execution(input: &Value) -> (Moto, StepFunctionsAnswers, String, String) {
    let moto = Moto::start().await;
    moto.run_state_machines().await;
    let (queue, _) = moto.queue("tasks").await;
    let machine = waiting_machine(&moto, &queue).await;
    let (execution, token) = start(&moto, &machine, &queue, input).await;
    let answers = StepFunctionsAnswers::new(moto.sfn());
    (moto, answers, execution, token)
}

#[tokio::test]
async fn a_success_ends_the_waiting_execution_with_its_output() {
    let (moto, answers, execution, token) = waiting_execution(&json!({"n": 1})).await;
    answers.heartbeat(&token).await.unwrap();
    answers
        .succeed(&token, json!({"outcome": "pass", "size": 5}))
        .await
        .unwrap();
    let done = finished(&moto, &execution).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    let output: Value = serde_json::from_str(done.output().unwrap()).unwrap();
    assert_eq!(output, json!({"outcome": "pass", "size": 5}));
    // Answered: nobody waits for the token any more, which a worker must hear as final.
    let err = answers.heartbeat(&token).await.unwrap_err();
    assert_eq!(err.retry, Retry::Permanent, "{}", err.message);
    let err = answers.succeed(&token, json!({})).await.unwrap_err();
    assert_eq!(err.retry, Retry::Permanent, "{}", err.message);
    assert!(err.message.contains("SendTaskSuccess"), "{}", err.message);
}

#[tokio::test]
async fn a_failure_ends_the_waiting_execution_with_its_error_name() {
    let (moto, answers, execution, token) = waiting_execution(&json!({"n": 2})).await;
    answers
        .fail(&token, "Airlock.Permanent", "clamd refused the connection")
        .await
        .unwrap();
    let done = finished(&moto, &execution).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    // (The emulator keeps the error name but not the cause.)
    assert_eq!(done.error(), Some("Airlock.Permanent"));

    // A token nobody issued: permanent, retrying cannot help.
    let err = answers.heartbeat("not-a-task-token").await.unwrap_err();
    assert_eq!(err.retry, Retry::Permanent, "{}", err.message);
    let err = answers
        .fail("not-a-task-token", "Airlock.Transient", "")
        .await
        .unwrap_err();
    assert_eq!(err.retry, Retry::Permanent, "{}", err.message);
}

fn event(kind: PipelineEventKind) -> PipelineEvent {
    let upload_id = UploadId::generate();
    PipelineEvent {
        kind,
        upload_id,
        tenant: TenantId::new("acme").unwrap(),
        purpose: Purpose::new("document").unwrap(),
        key: format!("trusted/acme/document/{upload_id}"),
        reason: (kind == PipelineEventKind::Quarantined).then_some(ReasonCode::Infected),
        at: Utc::now()
            .duration_trunc(chrono::Duration::seconds(1))
            .unwrap(),
    }
}

#[tokio::test]
async fn events_are_published_on_the_bus() {
    let moto = Moto::start().await;
    let (queue, queue_arn) = moto.queue("products").await;
    let events = moto.eventbridge();
    events
        .create_event_bus()
        .name("airlock-events")
        .send()
        .await
        .unwrap();
    events
        .put_rule()
        .name("to-products")
        .event_bus_name("airlock-events")
        .event_pattern(json!({"source": ["airlock"]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("to-products")
        .event_bus_name("airlock-events")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let sink = EventBridgeSink::new(moto.eventbridge(), "airlock-events");
    let ready = event(PipelineEventKind::Ready);
    let quarantined = event(PipelineEventKind::Quarantined);
    sink.publish(&ready).await.unwrap();
    sink.publish(&quarantined).await.unwrap();

    let mut received: Vec<Value> = moto
        .receive(&queue, 2, 20)
        .await
        .iter()
        .map(|body| serde_json::from_str(body).unwrap())
        .collect();
    assert_eq!(received.len(), 2);
    // Sorted by type: quarantined, then ready.
    received.sort_by_key(|e| e["detail-type"].as_str().unwrap().to_owned());
    for (envelope, sent) in received.iter().zip([&quarantined, &ready]) {
        assert_eq!(envelope["source"], "airlock");
        assert_eq!(
            envelope["detail-type"],
            serde_json::to_value(sent.kind).unwrap()
        );
        let detail: PipelineEvent = serde_json::from_value(envelope["detail"].clone()).unwrap();
        assert_eq!(&detail, sent);
    }

    // Another source is not forwarded by the rule.
    let other = EventBridgeSink::new(moto.eventbridge(), "airlock-events").with_source("elsewhere");
    other.publish(&ready).await.unwrap();
    assert!(moto.receive(&queue, 1, 2).await.is_empty());
}

#[tokio::test]
async fn an_event_the_bus_refuses_is_an_error() {
    let moto = Moto::start().await;
    let sink = EventBridgeSink::new(moto.eventbridge(), "no-such-bus");
    let err = sink
        .publish(&event(PipelineEventKind::Ready))
        .await
        .unwrap_err();
    assert_eq!(err.retry, Retry::Permanent, "{}", err.message);
    assert!(err.message.contains("no-such-bus"), "{}", err.message);
}
