use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::*;

const ID: &str = "019593fa-55c5-7dff-8690-a9c144e7cf0f";

fn key() -> String {
    format!("incoming/acme/avatar/{ID}")
}

/// A notification record as AWS sends it.
fn aws_record(event_name: &str, key: &str) -> Value {
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventTime": "2025-03-14T09:26:53.589Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AROAXK4PQ7ZL3NH2W6TYB:airlock-api"},
        "requestParameters": {"sourceIPAddress": "203.0.113.42"},
        "responseElements": {"x-amz-request-id": "TD4JPQUUHRZNDP65", "x-amz-id-2": "cZZvkerT3a8gdQ"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "airlock-incoming-created",
            "bucket": {"name": "airlock-uploads", "ownerIdentity": {"principalId": "A1Q7X9ZK2M4B6C"}, "arn": "arn:aws:s3:::airlock-uploads"},
            "object": {"key": key, "size": 48213, "eTag": "3a6b9f18e281f94097a7fa3840144758", "versionId": "PDAENnibpr1y.e3tW.40Cx83SJvEQRce", "sequencer": "0067D3F6A5C4194E47"}
        }
    })
}

fn notification(records: &[Value]) -> Value {
    json!({ "Records": records })
}

fn sqs_message(id: &str, body: &str) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": "AQEBwgzrAtZhxdYYHNQdbUK9bHVQrk",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1741944413589"},
        "messageAttributes": {},
        "md5OfBody": "5f9ca96e2ed74b596b3754325c069812",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:492817365024:airlock-uploads-events",
        "awsRegion": "eu-west-1"
    })
}

fn eventbridge(detail_type: &str, key: &str) -> Value {
    json!({
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "492817365024",
        "time": "2025-03-14T11:32:33Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:s3:::airlock-uploads"],
        "detail": {
            "version": "0",
            "bucket": {"name": "airlock-uploads"},
            "object": {"key": key, "size": 91733, "etag": "d66348e0882c573bf3bde9fb36c1eade", "version-id": "N_6wZPYdYeSLuMlYGhBAwmEr88uE6EAu", "sequencer": "67d413d1ab5f47c9"},
            "request-id": "U8S96TAZB30VLH8A",
            "requester": "492817365024",
            "source-ip-address": "203.0.113.42",
            "reason": "PutObject"
        }
    })
}

fn test_event() -> Value {
    json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2025-03-14T08:59:41.120Z", "Bucket": "airlock-uploads", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"})
}

fn only(items: &[IntakeItem]) -> &IntakeItem {
    assert_eq!(items.len(), 1, "{items:#?}");
    &items[0]
}

fn object(item: &IntakeItem) -> &ObjectRef {
    item.object()
        .unwrap_or_else(|| panic!("expected an object: {item}"))
}

fn error(item: &IntakeItem) -> &IntakeError {
    item.error()
        .unwrap_or_else(|| panic!("expected an error: {item}"))
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn aws_notification_yields_every_field() {
    let items = parse_event(
        "put.json",
        &notification(&[aws_record("ObjectCreated:Put", &key())]),
    );
    let item = only(&items);
    assert_eq!(item.source, "put.json: Records[0]");
    let mut expected = ObjectRef::new("airlock-uploads", key());
    expected.size = Some(48213);
    expected.etag = Some("3a6b9f18e281f94097a7fa3840144758".into());
    expected.version_id = Some("PDAENnibpr1y.e3tW.40Cx83SJvEQRce".into());
    expected.sequencer = Some("0067D3F6A5C4194E47".into());
    expected.event_name = Some("ObjectCreated:Put".into());
    expected.event_time = Some(
        Utc.with_ymd_and_hms(2025, 3, 14, 9, 26, 53).unwrap() + chrono::Duration::milliseconds(589),
    );
    assert_eq!(object(item), &expected);
}

#[test]
fn every_object_created_event_is_an_object_and_keeps_its_name() {
    for name in [
        "ObjectCreated:Put",
        "ObjectCreated:Post",
        "ObjectCreated:Copy",
        "ObjectCreated:CompleteMultipartUpload",
    ] {
        let items = parse_event("e.json", &notification(&[aws_record(name, &key())]));
        assert_eq!(object(only(&items)).event_name.as_deref(), Some(name));
    }
    // Names as written in notification configurations (MinIO sends them so).
    let items = parse_event(
        "e.json",
        &notification(&[aws_record("s3:ObjectCreated:Put", &key())]),
    );
    assert_eq!(
        object(only(&items)).event_name.as_deref(),
        Some("ObjectCreated:Put")
    );
}

#[test]
fn other_events_are_skipped_with_their_name() {
    for name in [
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
        "ObjectRestore:Completed",
        "ObjectCreatedButNotReally",
    ] {
        let items = parse_event("e.json", &notification(&[aws_record(name, &key())]));
        let reason = only(&items).skipped().expect("skipped");
        assert_eq!(
            reason,
            &SkipReason::NotObjectCreated {
                event_name: name.to_owned()
            }
        );
        assert_eq!(reason.code(), "not-object-created");
    }
}

#[test]
fn emulator_notification_without_optional_fields() {
    // moto[server] 5.x: no userIdentity, requestParameters, responseElements, versionId or
    // sequencer; `/` encoded; a time without zone.
    let event = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2025-03-14T10:29:58.204116", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "airlock-incoming-created",
               "bucket": {"name": "airlock-uploads", "arn": "arn:aws:s3:::airlock-uploads"},
               "object": {"key": format!("incoming%2Fglobex%2Fdocument%2F{ID}"), "size": 1832, "eTag": "447a7e06a84a1569129ea63903401cac"}}
    }]});
    let items = parse_event("moto.json", &event);
    let found = object(only(&items));
    assert_eq!(found.key, format!("incoming/globex/document/{ID}"));
    assert_eq!(found.size, Some(1832));
    assert_eq!(found.version_id, None);
    assert_eq!(found.sequencer, None);
    assert_eq!(found.event_time, Some(time("2025-03-14T10:29:58.204116Z")));
}

#[test]
fn optional_fields_may_be_absent_null_or_quoted() {
    let mut record = aws_record("ObjectCreated:Put", &key());
    let object_json = &mut record["s3"]["object"];
    object_json["versionId"] = Value::Null;
    object_json["eTag"] = json!("\"3a6b9f18e281f94097a7fa3840144758\"");
    let map = object_json.as_object_mut().unwrap();
    map.remove("size");
    map.remove("sequencer");
    record.as_object_mut().unwrap().remove("eventTime");
    let items = parse_event("e.json", &notification(&[record]));
    let found = object(only(&items));
    assert_eq!(
        found.etag.as_deref(),
        Some("3a6b9f18e281f94097a7fa3840144758")
    );
    assert_eq!(
        (
            found.size,
            &found.version_id,
            &found.sequencer,
            found.event_time
        ),
        (None, &None, &None, None)
    );
}

#[test]
fn decode_key_table() {
    for (raw, decoded) in [
        ("a+b", "a b"),
        ("a%2Bb", "a+b"),
        ("a%20b", "a b"),
        ("incoming%2Facme", "incoming/acme"),
        ("incoming%2facme", "incoming/acme"),
        ("%C3%A9t%C3%A9", "été"),
        ("c%2B%2B+notes", "c++ notes"),
        ("100%25", "100%"),
        ("plain/key-1_2.txt", "plain/key-1_2.txt"),
        ("", ""),
    ] {
        assert_eq!(decode_key(raw).unwrap(), decoded, "{raw}");
    }
    for (raw, reason) in [
        ("%ZZ", "'%' at byte 0 is not followed by two hex digits"),
        ("ab%2", "'%' at byte 2 is not followed by two hex digits"),
        ("ab%", "'%' at byte 2"),
        ("%+1", "'%' at byte 0"),
        ("%FF", "invalid UTF-8"),
        ("ok%C3", "invalid UTF-8 (after 2 valid bytes)"),
    ] {
        let err = decode_key(raw).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("key: cannot decode key {raw:?}: ")),
            "{text}"
        );
        assert!(text.contains(reason), "{raw}: {text}");
    }
}

#[test]
fn keys_outside_incoming_are_skipped_after_decoding() {
    for (raw, decoded) in [
        (
            format!("trusted/acme/avatar/{ID}"),
            format!("trusted/acme/avatar/{ID}"),
        ),
        (
            format!("quarantine%2Facme%2Favatar%2F{ID}.json"),
            format!("quarantine/acme/avatar/{ID}.json"),
        ),
        ("incoming".to_owned(), "incoming".to_owned()),
        ("Incoming/acme/x".to_owned(), "Incoming/acme/x".to_owned()),
    ] {
        let items = parse_event(
            "e.json",
            &notification(&[aws_record("ObjectCreated:Copy", &raw)]),
        );
        let reason = only(&items).skipped().expect("skipped");
        assert_eq!(reason, &SkipReason::OutsideIncoming { key: decoded });
        assert_eq!(reason.code(), "outside-incoming");
    }
    // Encoded the other way round, a key that only looks outside is inside.
    let items = parse_event(
        "e.json",
        &notification(&[aws_record(
            "ObjectCreated:Put",
            &format!("incoming%2Facme%2Favatar%2F{ID}"),
        )]),
    );
    assert_eq!(object(only(&items)).key, key());
}

#[test]
fn test_event_is_skipped_not_an_error() {
    let items = parse_event("test.json", &test_event());
    let item = only(&items);
    assert_eq!(item.source, "test.json");
    assert_eq!(item.skipped(), Some(&SkipReason::TestEvent));
    assert_eq!(SkipReason::TestEvent.code(), "test-event");
    assert_eq!(item.to_string(), "test.json: skipped: s3:TestEvent");
}

#[test]
fn a_bad_record_costs_only_itself_and_names_its_field() {
    let mut bad = aws_record("ObjectCreated:Put", "unused");
    bad["s3"]["object"].as_object_mut().unwrap().remove("key");
    let good = aws_record("ObjectCreated:Put", &key());
    let items = parse_event("put.json", &notification(&[bad, good.clone(), good]));
    assert_eq!(items.len(), 3);
    let err = error(&items[0]);
    assert_eq!(err.field, "Records[0].s3.object.key");
    assert_eq!(err.problem, IntakeProblem::Missing);
    assert_eq!(
        err.to_string(),
        "put.json: Records[0].s3.object.key: missing"
    );
    assert_eq!(
        items[0].to_string(),
        "put.json: Records[0]: error: Records[0].s3.object.key: missing"
    );
    assert_eq!(object(&items[1]).key, key());
    assert_eq!(items[2].source, "put.json: Records[2]");
    assert_eq!(object(&items[2]).key, key());
}

#[test]
fn field_errors_name_the_field_and_the_problem() {
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str, &str); 11] = [
        (
            |r| {
                r.as_object_mut().unwrap().remove("eventName");
            },
            "Records[0].eventName",
            "missing",
        ),
        (
            |r| r["eventName"] = json!(7),
            "Records[0].eventName",
            "expected a string, found a number",
        ),
        (
            |r| {
                r["s3"]["bucket"].as_object_mut().unwrap().remove("name");
            },
            "Records[0].s3.bucket.name",
            "missing",
        ),
        (
            |r| r["s3"]["bucket"]["name"] = json!(""),
            "Records[0].s3.bucket.name",
            "empty",
        ),
        (
            |r| r["s3"]["object"] = json!("key"),
            "Records[0].s3.object",
            "expected an object, found a string",
        ),
        (
            |r| r["s3"]["object"]["key"] = json!(["a"]),
            "Records[0].s3.object.key",
            "expected a string, found an array",
        ),
        (
            |r| r["s3"]["object"]["key"] = json!("incoming/a%G1"),
            "Records[0].s3.object.key",
            "cannot decode key \"incoming/a%G1\": '%' at byte 10",
        ),
        (
            |r| r["s3"]["object"]["size"] = json!(-1),
            "Records[0].s3.object.size",
            "expected a non-negative integer, found a number",
        ),
        (
            |r| r["s3"]["object"]["size"] = json!("48213"),
            "Records[0].s3.object.size",
            "expected a non-negative integer, found a string",
        ),
        (
            |r| r["eventTime"] = json!("yesterday"),
            "Records[0].eventTime",
            "invalid time \"yesterday\": ",
        ),
        (
            |r| r["eventTime"] = json!("2025-02-30T10:00:00Z"),
            "Records[0].eventTime",
            "invalid time \"2025-02-30T10:00:00Z\"",
        ),
    ];
    for (edit, field, problem) in cases {
        let mut record = aws_record("ObjectCreated:Put", &key());
        edit(&mut record);
        let items = parse_event("put.json", &notification(&[record]));
        let err = error(only(&items));
        assert_eq!(err.field, field);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("put.json: {field}: {problem}")),
            "{text}"
        );
    }
}

#[test]
fn shape_errors() {
    let cases = [
        (
            json!({"Records": {"eventName": "x"}}),
            "t.json",
            "Records",
            "expected an array, found an object",
        ),
        (
            json!({"Records": [3]}),
            "t.json: Records[0]",
            "Records[0]",
            "expected an object, found a number",
        ),
        (
            json!({"Records": [{"eventName": "ObjectCreated:Put"}]}),
            "t.json: Records[0]",
            "Records[0]",
            "unrecognised event: expected an S3 notification record",
        ),
        (
            json!({"hello": "world"}),
            "t.json",
            "",
            "unrecognised event: expected S3 notification Records",
        ),
        (
            json!("Records"),
            "t.json",
            "",
            "expected an event object or an array of events, found a string",
        ),
        (
            json!({"Service": "Amazon S3", "Event": "s3:SomethingElse"}),
            "t.json",
            "",
            "unrecognised event",
        ),
    ];
    for (event, source, field, problem) in cases {
        let items = parse_event("t.json", &event);
        let item = only(&items);
        assert_eq!(item.source, source);
        let err = error(item);
        assert_eq!(err.field, field);
        assert!(err.problem.to_string().starts_with(problem), "{err}");
    }
    assert!(parse_event("t.json", &json!({"Records": []})).is_empty());
    assert!(parse_event("t.json", &json!([])).is_empty());
}

#[test]
fn text_that_is_not_json_is_one_error() {
    let items = parse_event_str("capture.json", "Records: none");
    let err = error(only(&items));
    assert_eq!(items[0].source, "capture.json");
    assert_eq!(
        err.to_string(),
        "capture.json: not JSON: expected value at line 1 column 1"
    );
    assert_eq!(
        items[0].to_string(),
        "capture.json: error: not JSON: expected value at line 1 column 1"
    );

    let text =
        serde_json::to_string(&notification(&[aws_record("ObjectCreated:Put", &key())])).unwrap();
    let items = parse_event_str("put.json", &text);
    assert_eq!(object(only(&items)).key, key());
}

#[test]
fn sqs_batch_with_a_bad_body_keeps_the_others() {
    let good = serde_json::to_string(&notification(&[
        aws_record("ObjectCreated:Put", &key()),
        aws_record("ObjectCreated:Put", &format!("incoming/acme/document/{ID}")),
    ]))
    .unwrap();
    let event = json!({"Records": [
        sqs_message("059f36b4-87a3-44ab-83d2-661975830a7d", &good),
        sqs_message("2e1424d4-f796-459a-8184-9c92662be6da", "{\"Records\": [{\"eventName\": "),
        sqs_message("fd6ee8b0-0a5c-4f05-9d5e-6e0c0ad6b34c", &test_event().to_string()),
        sqs_message("c6f1d1b8-4a59-4d44-b1b2-42e0fa6b0e57", ""),
        json!({"messageId": "0d6f3d1e-6a4b-4a57-8f55-1b1f4a4cbb2e", "body": {"Records": []}, "eventSource": "aws:sqs"}),
    ]});
    let items = parse_event("batch.json", &event);
    assert_eq!(items.len(), 6, "{items:#?}");
    assert_eq!(
        items[0].source,
        "batch.json: Records[0] (SQS message 059f36b4-87a3-44ab-83d2-661975830a7d) > Records[0]"
    );
    assert_eq!(object(&items[0]).key, key());
    assert_eq!(
        items[1].source,
        "batch.json: Records[0] (SQS message 059f36b4-87a3-44ab-83d2-661975830a7d) > Records[1]"
    );
    assert_eq!(
        object(&items[1]).key,
        format!("incoming/acme/document/{ID}")
    );

    let bad = &items[2];
    assert_eq!(
        bad.source,
        "batch.json: Records[1] (SQS message 2e1424d4-f796-459a-8184-9c92662be6da)"
    );
    let err = error(bad);
    assert_eq!(err.field, "Records[1].body");
    assert_eq!(
        err.to_string(),
        "batch.json: Records[1] (SQS message 2e1424d4-f796-459a-8184-9c92662be6da): body: not JSON: EOF while parsing a value at line 1 column 27"
    );

    assert_eq!(
        items[3].source,
        "batch.json: Records[2] (SQS message fd6ee8b0-0a5c-4f05-9d5e-6e0c0ad6b34c)"
    );
    assert_eq!(items[3].skipped(), Some(&SkipReason::TestEvent));
    assert_eq!(error(&items[4]).problem, IntakeProblem::Empty);
    assert_eq!(error(&items[4]).field, "Records[3].body");
    assert_eq!(
        error(&items[5]).to_string(),
        "batch.json: Records[4] (SQS message 0d6f3d1e-6a4b-4a57-8f55-1b1f4a4cbb2e): body: expected a string, found an object"
    );
}

#[test]
fn errors_inside_a_body_are_placed_inside_the_message() {
    let mut record = aws_record("ObjectCreated:Put", &key());
    record["s3"]["bucket"]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let body = notification(&[record]).to_string();
    let items = parse_event(
        "batch.json",
        &json!({"Records": [sqs_message("m-1", &body)]}),
    );
    let err = error(only(&items));
    assert_eq!(err.field, "Records[0].s3.bucket.name");
    assert_eq!(
        err.to_string(),
        "batch.json: Records[0] (SQS message m-1) > Records[0].s3.bucket.name: missing"
    );
}

#[test]
fn sns_envelopes_in_sqs_bodies_and_lambda_records() {
    let inner = notification(&[aws_record("ObjectCreated:Post", &key())]).to_string();
    let envelope = json!({
        "Type": "Notification",
        "MessageId": "20c6be60-92de-41d5-a7cc-c135fcab2986",
        "TopicArn": "arn:aws:sns:eu-west-1:492817365024:airlock-uploads-events",
        "Subject": "Amazon S3 Notification",
        "Message": inner,
        "Timestamp": "2025-03-14T12:39:02.987Z",
        "SignatureVersion": "1"
    });
    let items = parse_event(
        "q.json",
        &json!({"Records": [sqs_message("m-1", &envelope.to_string())]}),
    );
    let item = only(&items);
    assert_eq!(
        item.source,
        "q.json: Records[0] (SQS message m-1) (SNS message 20c6be60-92de-41d5-a7cc-c135fcab2986) > Records[0]"
    );
    assert_eq!(
        object(item).event_name.as_deref(),
        Some("ObjectCreated:Post")
    );

    // Lambda subscribed to the topic directly.
    let lambda =
        json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": envelope}]});
    let items = parse_event("sns.json", &lambda);
    let item = only(&items);
    assert_eq!(
        item.source,
        "sns.json: Records[0] (SNS message 20c6be60-92de-41d5-a7cc-c135fcab2986) > Records[0]"
    );
    assert_eq!(object(item).key, key());

    // An envelope whose message is not JSON.
    let mut broken = envelope.clone();
    broken["Message"] = json!("Records?");
    let items = parse_event("sns.json", &broken);
    let err = error(only(&items));
    assert_eq!(err.field, "Message");
    assert_eq!(
        err.to_string(),
        "sns.json (SNS message 20c6be60-92de-41d5-a7cc-c135fcab2986): Message: not JSON: expected value at line 1 column 1"
    );

    // Subscription confirmations carry nothing from S3.
    let confirmation = json!({"Type": "SubscriptionConfirmation", "MessageId": "x", "Message": "You have chosen to subscribe", "Token": "2336412f37"});
    let items = parse_event("sns.json", &confirmation);
    let reason = only(&items).skipped().expect("skipped");
    assert_eq!(
        reason,
        &SkipReason::NotS3 {
            source: "SNS SubscriptionConfirmation".into()
        }
    );
    assert_eq!(reason.code(), "not-s3");
}

#[test]
fn embedding_is_bounded() {
    let mut event = notification(&[aws_record("ObjectCreated:Put", &key())]);
    for level in 0..6 {
        event = json!({"Type": "Notification", "MessageId": format!("m{level}"), "Message": event.to_string()});
    }
    let items = parse_event("deep.json", &event);
    let err = error(only(&items));
    assert_eq!(err.problem, IntakeProblem::TooDeep);
    // Four levels are fine.
    let mut event = notification(&[aws_record("ObjectCreated:Put", &key())]);
    for level in 0..MAX_NESTING {
        event = json!({"Type": "Notification", "MessageId": format!("m{level}"), "Message": event.to_string()});
    }
    assert_eq!(object(only(&parse_event("deep.json", &event))).key, key());
}

#[test]
fn eventbridge_object_created() {
    let items = parse_event("eb.json", &eventbridge("Object Created", &key()));
    let item = only(&items);
    assert_eq!(item.source, "eb.json");
    let mut expected = ObjectRef::new("airlock-uploads", key());
    expected.size = Some(91733);
    expected.etag = Some("d66348e0882c573bf3bde9fb36c1eade".into());
    expected.version_id = Some("N_6wZPYdYeSLuMlYGhBAwmEr88uE6EAu".into());
    expected.sequencer = Some("67d413d1ab5f47c9".into());
    expected.event_name = Some("ObjectCreated:Put".into());
    expected.event_time = Some(time("2025-03-14T11:32:33Z"));
    assert_eq!(object(item), &expected);
}

#[test]
fn eventbridge_reasons_map_to_event_names() {
    for (reason, name) in [
        (json!("PutObject"), "ObjectCreated:Put"),
        (json!("PostObject"), "ObjectCreated:Post"),
        (json!("CopyObject"), "ObjectCreated:Copy"),
        (
            json!("CompleteMultipartUpload"),
            "ObjectCreated:CompleteMultipartUpload",
        ),
        (json!("ObjectCreated"), "ObjectCreated"),
        (json!("RestoreObject"), "ObjectCreated:RestoreObject"),
        (Value::Null, "ObjectCreated"),
    ] {
        let mut event = eventbridge("Object Created", &key());
        event["detail"]["reason"] = reason;
        let items = parse_event("eb.json", &event);
        assert_eq!(object(only(&items)).event_name.as_deref(), Some(name));
    }
}

#[test]
fn eventbridge_keys_are_taken_verbatim() {
    let raw = "incoming/acme/document/c++ notes%20(1).txt";
    let items = parse_event("eb.json", &eventbridge("Object Created", raw));
    assert_eq!(object(only(&items)).key, raw);
    let items = parse_event(
        "eb.json",
        &eventbridge("Object Created", "trusted/acme/avatar/x"),
    );
    assert_eq!(
        only(&items).skipped().map(SkipReason::code),
        Some("outside-incoming")
    );
}

#[test]
fn eventbridge_other_events_and_sources_are_skipped() {
    let items = parse_event("eb.json", &eventbridge("Object Deleted", &key()));
    assert_eq!(
        only(&items).skipped(),
        Some(&SkipReason::NotObjectCreated {
            event_name: "Object Deleted".into()
        })
    );
    let mut event = eventbridge("Object Created", &key());
    event["source"] = json!("aws.ec2");
    let items = parse_event("eb.json", &event);
    assert_eq!(
        only(&items).skipped(),
        Some(&SkipReason::NotS3 {
            source: "aws.ec2".into()
        })
    );
}

#[test]
fn eventbridge_from_the_emulator() {
    // moto: `eTag` rather than `etag`, and the time as seconds since the epoch.
    let mut event = eventbridge("Object Created", &key());
    let object_json = event["detail"]["object"].as_object_mut().unwrap();
    let etag = object_json.remove("etag").unwrap();
    object_json.insert("eTag".into(), etag);
    event["time"] = json!(1_741_951_953.25);
    event["detail"]["reason"] = json!("ObjectCreated");
    let items = parse_event("eb.json", &event);
    let found = object(only(&items));
    assert_eq!(
        found.etag.as_deref(),
        Some("d66348e0882c573bf3bde9fb36c1eade")
    );
    assert_eq!(found.event_time, Some(time("2025-03-14T11:32:33.250Z")));
}

#[test]
fn eventbridge_errors_name_the_field() {
    let mut event = eventbridge("Object Created", &key());
    event["detail"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("key");
    let items = parse_event("eb.json", &event);
    assert_eq!(
        error(only(&items)).to_string(),
        "eb.json: detail.object.key: missing"
    );
    let mut event = eventbridge("Object Created", &key());
    event["time"] = json!("14/03/2025");
    let items = parse_event("eb.json", &event);
    assert_eq!(error(only(&items)).field, "time");
    let mut event = eventbridge("Object Created", &key());
    event["time"] = json!(1e300);
    let items = parse_event("eb.json", &event);
    assert!(matches!(
        error(only(&items)).problem,
        IntakeProblem::BadTime { .. }
    ));
}

#[test]
fn arrays_of_events_yield_items_of_each() {
    let event = json!([
        test_event(),
        notification(&[
            aws_record("ObjectCreated:Put", &key()),
            aws_record("ObjectRemoved:Delete", &key())
        ]),
        eventbridge("Object Created", &key()),
        [test_event()],
        42,
    ]);
    let items = parse_event("capture.json", &event);
    let sources: Vec<&str> = items.iter().map(|item| item.source.as_str()).collect();
    assert_eq!(
        sources,
        [
            "capture.json: [0]",
            "capture.json: [1].Records[0]",
            "capture.json: [1].Records[1]",
            "capture.json: [2]",
            "capture.json: [3][0]",
            "capture.json: [4]",
        ]
    );
    assert_eq!(items[0].skipped(), Some(&SkipReason::TestEvent));
    assert_eq!(object(&items[1]).key, key());
    assert_eq!(
        items[2].skipped().map(SkipReason::code),
        Some("not-object-created")
    );
    assert_eq!(
        object(&items[3]).event_name.as_deref(),
        Some("ObjectCreated:Put")
    );
    assert_eq!(items[4].skipped(), Some(&SkipReason::TestEvent));
    assert_eq!(error(&items[5]).field, "[4]");
}

#[test]
fn object_refs_survive_serialization() {
    let event = json!([
        notification(&[aws_record(
            "ObjectCreated:Put",
            &format!("incoming/acme/document/%C3%A9t%C3%A9+%2B{ID}")
        )]),
        eventbridge("Object Created", &key()),
    ]);
    let objects: Vec<ObjectRef> = parse_event("e.json", &event)
        .iter()
        .map(|item| object(item).clone())
        .collect();
    assert_eq!(objects.len(), 2);
    for found in objects {
        let text = serde_json::to_string(&found).unwrap();
        let back: ObjectRef = serde_json::from_str(&text).unwrap();
        assert_eq!(back, found, "{text}");
    }
}

#[test]
fn displays_read_well() {
    let items = parse_event(
        "put.json",
        &notification(&[
            aws_record("ObjectCreated:Put", &key()),
            aws_record("ObjectCreated:Copy", "trusted/x"),
        ]),
    );
    assert_eq!(
        items[0].to_string(),
        format!(
            "put.json: Records[0]: object s3://airlock-uploads/{} (ObjectCreated:Put, 48213 bytes)",
            key()
        )
    );
    assert_eq!(
        items[1].to_string(),
        "put.json: Records[1]: skipped: key \"trusted/x\" is not under incoming/"
    );
    assert_eq!(
        SkipReason::NotObjectCreated {
            event_name: "ObjectRemoved:Delete".into()
        }
        .to_string(),
        "ObjectRemoved:Delete is not an object creation"
    );
    assert_eq!(
        Intake::Object(ObjectRef::new("b", "incoming/k")).to_string(),
        "object s3://b/incoming/k"
    );
}

#[test]
fn hostile_keys_are_errors_of_the_key_field() {
    for (raw, why) in [
        ("incoming/acme/..%2F..%2Ftrusted%2Fx", "'..'"),
        ("incoming/acme/avatar/a%00b", "control"),
        ("incoming/acme/avatar/%1B%5B31mred", "control"),
        ("incoming//avatar/x", "empty"),
        ("%2Fincoming/acme/avatar/x", "starts with"),
        ("trusted/../incoming/x", "'..'"),
    ] {
        let items = parse_event(
            "put.json",
            &notification(&[aws_record("ObjectCreated:Put", raw)]),
        );
        let err = items[0]
            .error()
            .unwrap_or_else(|| panic!("{raw}: {:?}", items[0]));
        assert_eq!(err.field, "Records[0].s3.object.key", "{raw}");
        assert!(
            matches!(err.problem, IntakeProblem::UnsafeKey { .. }),
            "{raw}"
        );
        let text = err.to_string();
        assert!(text.contains(why), "{raw}: {text}");
        assert!(
            !text.chars().any(char::is_control),
            "{raw}: printed raw: {text}"
        );
    }
    let event = json!({"detail-type": "Object Created", "source": "aws.s3", "time": "2025-03-14T09:26:53Z",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "incoming/a/../b", "size": 1}}});
    let err = parse_event("eb.json", &event)[0].error().cloned().unwrap();
    assert_eq!(err.field, "detail.object.key");
}
