//! Least privilege and the deployment's safety settings, tested: reads `template.yaml` and
//! asserts, per Lambda function and ECS role, the exact set of (action, resource) pairs it
//! is granted, with the KMS key parameter empty and set, and which table items each may
//! write; that no action is a wildcard; that `*` resources are granted only for actions
//! that take no resource; that only the pipeline's roles can read `incoming/`, `staging/`
//! or `quarantine/`, which the bucket policy also denies to everyone else; that buckets are
//! private, encrypted and TLS-only, queues encrypted with alarmed dead-letter queues; that
//! the table is the one the DynamoDB adapter uses; and that the state machine's
//! substitutions are the definition's placeholders.
//!
//! Intrinsic functions are rendered as the text CloudFormation would substitute, so a
//! grant reads like the policy it becomes: `!GetAtt UploadBucket.Arn` is
//! `${UploadBucket.Arn}`, `!Sub ${UploadBucket.Arn}/incoming/*` stays as written.

use std::collections::{BTreeMap, BTreeSet};

use airlock_tests::repo_root;
use serde_norway::Value;

/// Which way the template's conditions go.
#[derive(Clone, Copy, Debug)]
struct Conditions {
    use_kms: bool,
}

impl Conditions {
    fn get(self, name: &str) -> bool {
        match name {
            "UseKms" => self.use_kms,
            other => panic!("the test does not know the template condition {other}"),
        }
    }
}

fn template() -> Value {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn resources(template: &Value) -> &serde_norway::Mapping {
    template["Resources"]
        .as_mapping()
        .expect("template.yaml has Resources")
}

/// An intrinsic function, short form (`!Ref X`) or long (`{Ref: X}`, `{Fn::If: ...}`).
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let name = if name == "Ref" {
                "Ref".to_owned()
            } else {
                format!("Fn::{name}")
            };
            Some((name, &tagged.value))
        }
        Value::Mapping(map) if map.len() == 1 => {
            let (key, inner) = map.iter().next()?;
            let key = key.as_str()?;
            (key == "Ref" || key.starts_with("Fn::")).then(|| (key.to_owned(), inner))
        }
        _ => None,
    }
}

/// Resolves `Fn::If` (and drops `AWS::NoValue`), leaving everything else as it is.
fn select(value: &Value, conditions: Conditions) -> Option<Value> {
    if let Some((name, inner)) = intrinsic(value) {
        match name.as_str() {
            "Fn::If" => {
                let args = inner.as_sequence().expect("Fn::If takes a list");
                let condition = args[0].as_str().expect("Fn::If names a condition");
                let branch = if conditions.get(condition) {
                    &args[1]
                } else {
                    &args[2]
                };
                return select(branch, conditions);
            }
            "Ref" if inner.as_str() == Some("AWS::NoValue") => return None,
            _ => return Some(value.clone()),
        }
    }
    match value {
        Value::Sequence(items) => Some(Value::Sequence(
            items.iter().filter_map(|v| select(v, conditions)).collect(),
        )),
        Value::Mapping(map) => Some(Value::Mapping(
            map.iter()
                .filter_map(|(k, v)| select(v, conditions).map(|v| (k.clone(), v)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// A string-valued field as the text CloudFormation substitutes.
fn render(value: &Value) -> String {
    // Intrinsics first: `as_str` looks through a YAML tag, so `!Ref X` would read as `X`.
    let Some((name, inner)) = intrinsic(value) else {
        return value
            .as_str()
            .unwrap_or_else(|| panic!("not a string or intrinsic: {value:?}"))
            .to_owned();
    };
    match name.as_str() {
        "Ref" => format!("${{{}}}", inner.as_str().expect("Ref names something")),
        "Fn::GetAtt" => match inner {
            Value::String(s) => format!("${{{s}}}"),
            Value::Sequence(parts) => format!(
                "${{{}.{}}}",
                parts[0].as_str().expect("GetAtt resource"),
                parts[1].as_str().expect("GetAtt attribute")
            ),
            other => panic!("GetAtt of {other:?}"),
        },
        "Fn::Sub" => match inner {
            Value::String(s) => s.clone(),
            other => panic!("the test renders only Fn::Sub of a plain string, not {other:?}"),
        },
        other => panic!("the test does not render {other} in a policy"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().map(render).collect(),
        single => vec![render(single)],
    }
}

/// The role's inline policy statements, conditions resolved, each checked to be a plain
/// `Allow` of named actions on named resources.
fn statements(role: &Value, conditions: Conditions) -> Vec<Value> {
    let properties = &role["Properties"];
    assert!(
        properties.get("ManagedPolicyArns").is_none(),
        "roles take no managed policies (their grants cannot be checked here)"
    );
    let mut out = Vec::new();
    for policy in properties["Policies"]
        .as_sequence()
        .expect("a role has inline Policies")
    {
        let document = select(&policy["PolicyDocument"], conditions).expect("a policy document");
        for statement in document["Statement"].as_sequence().expect("statements") {
            assert_eq!(
                statement["Effect"].as_str(),
                Some("Allow"),
                "role policies only allow: {statement:?}"
            );
            assert!(
                statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
                "NotAction / NotResource grant everything else: {statement:?}"
            );
            out.push(statement.clone());
        }
    }
    out
}

/// Every (action, resource) pair the role's inline policies allow. Conditions only narrow
/// a grant, so leaving them out here overstates what a role may do, never understates it;
/// [`table_item_scopes`] checks the ones on the table.
fn grants(role: &Value, conditions: Conditions) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for statement in statements(role, conditions) {
        for action in strings(&statement["Action"]) {
            for resource in strings(&statement["Resource"]) {
                out.insert((action.clone(), resource));
            }
        }
    }
    out
}

/// Per DynamoDB action the role is granted, the partition keys (`dynamodb:LeadingKeys`
/// patterns) it may touch; `*` when the statement has no such condition.
fn table_item_scopes(role: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for statement in statements(role, Conditions { use_kms: false }) {
        let actions: Vec<String> = strings(&statement["Action"])
            .into_iter()
            .filter(|a| a.starts_with("dynamodb:"))
            .collect();
        if actions.is_empty() {
            continue;
        }
        let scope: BTreeSet<String> = match statement.get("Condition") {
            None => BTreeSet::from(["*".to_owned()]),
            Some(condition) => {
                let keys = &condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
                assert!(
                    condition.as_mapping().map(serde_norway::Mapping::len) == Some(1)
                        && !keys.is_null(),
                    "a table grant's only condition is ForAllValues:StringLike on \
                     dynamodb:LeadingKeys: {statement:?}"
                );
                strings(keys).into_iter().collect()
            }
        };
        for action in actions {
            out.entry(action).or_default().extend(scope.iter().cloned());
        }
    }
    out
}

fn set(pairs: &[(&[&str], &[&str])]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (actions, resources) in pairs {
        for action in *actions {
            for resource in *resources {
                out.insert(((*action).to_owned(), (*resource).to_owned()));
            }
        }
    }
    out
}

const XRAY: &[&str] = &["xray:PutTraceSegments", "xray:PutTelemetryRecords"];
const ANSWER_TASKS: &[&str] = &[
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
];
const LOG_LINES: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];
const OBJECT_KEY: &[&str] = &["${KmsKeyArn}"];

/// What each role may do, by the role's logical id.
fn expected(conditions: Conditions) -> BTreeMap<&'static str, BTreeSet<(String, String)>> {
    let kms = |actions: &'static [&'static str]| -> Vec<(&'static [&'static str], &'static [&'static str])> {
        if conditions.use_kms {
            vec![(actions, OBJECT_KEY)]
        } else {
            vec![]
        }
    };
    let mut sign: Vec<(&[&str], &[&str])> = vec![
        (
            &[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ],
            &["${IntentTable.Arn}"],
        ),
        (
            &["s3:PutObject", "s3:AbortMultipartUpload"],
            &["${UploadBucket.Arn}/incoming/*"],
        ),
        (&["s3:GetObject"], &["${UploadBucket.Arn}/trusted/*"]),
        (LOG_LINES, &["${SignLogGroup.Arn}"]),
        (XRAY, &["*"]),
    ];
    sign.extend(kms(&["kms:GenerateDataKey", "kms:Decrypt"]));

    let ingest: Vec<(&[&str], &[&str])> = vec![
        (&["states:StartExecution"], &["${PipelineStateMachine}"]),
        (
            &[
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
            ],
            &["${IngestQueue.Arn}"],
        ),
        (LOG_LINES, &["${IngestLogGroup.Arn}"]),
        (XRAY, &["*"]),
    ];

    let mut worker: Vec<(&[&str], &[&str])> = vec![
        (
            &[
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
            ],
            &["${UploadBucket.Arn}/incoming/*"],
        ),
        (
            &[
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
            ],
            &["${UploadBucket.Arn}/staging/*"],
        ),
        (
            &["s3:GetObject", "s3:PutObject"],
            &[
                "${UploadBucket.Arn}/trusted/*",
                "${UploadBucket.Arn}/quarantine/*",
            ],
        ),
        (&["s3:ListBucket"], &["${UploadBucket.Arn}"]),
        (
            &[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ],
            &["${IntentTable.Arn}"],
        ),
        (ANSWER_TASKS, &["*"]),
        (&["events:PutEvents"], &["${EventBus.Arn}"]),
        (
            &[
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
            ],
            &[
                "${InspectQueue.Arn}",
                "${MediaQueue.Arn}",
                "${PromoteQueue.Arn}",
                "${QuarantineQueue.Arn}",
            ],
        ),
        (LOG_LINES, &["${WorkerLogGroup.Arn}"]),
        (XRAY, &["*"]),
    ];
    worker.extend(kms(&["kms:GenerateDataKey", "kms:Decrypt"]));

    let mut scanner: Vec<(&[&str], &[&str])> = vec![
        (
            &["s3:GetObject", "s3:GetObjectVersion"],
            &["${UploadBucket.Arn}/incoming/*"],
        ),
        (&["s3:GetObject"], &["${DefinitionsBucket.Arn}/database/*"]),
        (
            &[
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
            ],
            &["${ScanQueue.Arn}"],
        ),
        (ANSWER_TASKS, &["*"]),
    ];
    scanner.extend(kms(&["kms:Decrypt"]));

    let scanner_execution: Vec<(&[&str], &[&str])> = vec![
        (
            &[
                "ecr:GetAuthorizationToken",
                "ecr:BatchCheckLayerAvailability",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchGetImage",
            ],
            &["*"],
        ),
        (LOG_LINES, &["${ScannerLogGroup.Arn}"]),
    ];

    let mut refresh: Vec<(&[&str], &[&str])> = vec![
        (
            &["s3:GetObject", "s3:PutObject"],
            &[
                "${DefinitionsBucket.Arn}/database/*",
                "${DefinitionsBucket.Arn}/cvdupdate/*",
            ],
        ),
        (&["s3:ListBucket"], &["${DefinitionsBucket.Arn}"]),
        (LOG_LINES, &["${DefinitionsRefreshLogGroup.Arn}"]),
        (XRAY, &["*"]),
    ];
    refresh.extend(kms(&["kms:GenerateDataKey", "kms:Decrypt"]));

    let state_machine: Vec<(&[&str], &[&str])> = vec![
        (
            &["sqs:SendMessage"],
            &[
                "${InspectQueue.Arn}",
                "${ScanQueue.Arn}",
                "${MediaQueue.Arn}",
                "${PromoteQueue.Arn}",
                "${QuarantineQueue.Arn}",
            ],
        ),
        (
            &[
                "logs:CreateLogDelivery",
                "logs:GetLogDelivery",
                "logs:UpdateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:DescribeResourcePolicies",
                "logs:DescribeLogGroups",
            ],
            &["*"],
        ),
        (
            &[
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
            ],
            &["*"],
        ),
    ];

    BTreeMap::from([
        ("SignRole", set(&sign)),
        ("IngestRole", set(&ingest)),
        ("WorkerRole", set(&worker)),
        ("ScannerTaskRole", set(&scanner)),
        ("ScannerExecutionRole", set(&scanner_execution)),
        ("DefinitionsRefreshRole", set(&refresh)),
        ("StateMachineRole", set(&state_machine)),
    ])
}

/// Actions IAM lets name no resource (X-Ray, task tokens, ECR's token, log delivery), and
/// ECR pulls of an image the template only knows as a parameter.
const STAR_RESOURCE_ALLOWED: &[&str] = &[
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
];

const BOTH: [Conditions; 2] = [Conditions { use_kms: false }, Conditions { use_kms: true }];

fn roles(template: &Value) -> BTreeMap<String, &Value> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::IAM::Role"))
        .map(|(id, r)| (id.as_str().expect("logical id").to_owned(), r))
        .collect()
}

#[test]
fn every_role_is_granted_exactly_what_its_code_uses() {
    let template = template();
    let roles = roles(&template);
    for conditions in BOTH {
        let expected = expected(conditions);
        assert_eq!(
            roles.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            expected.keys().copied().collect::<BTreeSet<_>>(),
            "every role in the template is one this test knows"
        );
        for (id, want) in &expected {
            let got = grants(roles[*id], conditions);
            let extra: Vec<_> = got.difference(want).collect();
            let missing: Vec<_> = want.difference(&got).collect();
            assert!(
                extra.is_empty() && missing.is_empty(),
                "{id} ({conditions:?}): granted beyond what it needs: {extra:?}; missing: {missing:?}"
            );
        }
    }
}

#[test]
fn no_wildcard_actions_and_star_resources_only_where_iam_requires_them() {
    let template = template();
    for conditions in BOTH {
        for (id, role) in roles(&template) {
            for (action, resource) in grants(role, conditions) {
                assert!(
                    !action.contains('*') && !action.contains('?'),
                    "{id}: wildcard action {action}"
                );
                assert!(
                    resource != "*" || STAR_RESOURCE_ALLOWED.contains(&action.as_str()),
                    "{id}: {action} on every resource"
                );
                // An object grant always names a prefix, never every object of a bucket.
                assert!(
                    !resource.ends_with("Bucket.Arn}/*"),
                    "{id}: {action} on every object of {resource}"
                );
            }
        }
    }
}

#[test]
fn only_the_pipeline_reads_unsettled_objects_and_sign_reads_only_trusted() {
    let template = template();
    let reads = ["s3:GetObject", "s3:GetObjectVersion"];
    let readers = |prefix: &str| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for conditions in BOTH {
            for (id, role) in roles(&template) {
                for (action, resource) in grants(role, conditions) {
                    if reads.contains(&action.as_str())
                        && resource.starts_with("${UploadBucket.Arn}")
                        && (resource.contains(prefix) || resource.ends_with("}/*"))
                    {
                        out.insert(id.clone());
                    }
                }
            }
        }
        out
    };
    let set = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(
        readers("/incoming/"),
        set(&["ScannerTaskRole", "WorkerRole"])
    );
    assert_eq!(readers("/quarantine/"), set(&["WorkerRole"]));
    assert_eq!(readers("/staging/"), set(&["WorkerRole"]));

    let sign_reads: BTreeSet<_> = grants(roles(&template)["SignRole"], BOTH[1])
        .into_iter()
        .filter(|(action, _)| action.starts_with("s3:Get"))
        .collect();
    assert_eq!(
        sign_reads,
        BTreeSet::from([(
            "s3:GetObject".to_owned(),
            "${UploadBucket.Arn}/trusted/*".to_owned()
        )]),
        "the sign function reads (signs downloads of) trusted/ only"
    );
}

#[test]
fn functions_run_as_their_own_roles_with_the_agreed_environment() {
    let template = template();
    let resources = resources(&template);
    let expected: [(&str, &str, &[&str]); 4] = [
        (
            "SignFunction",
            "SignRole",
            &["AIRLOCK_BUCKET", "AIRLOCK_TABLE", "AIRLOCK_TENANT_CLAIM"],
        ),
        (
            "IngestFunction",
            "IngestRole",
            &["AIRLOCK_STATE_MACHINE_ARN", "AIRLOCK_BUCKET"],
        ),
        (
            "WorkerFunction",
            "WorkerRole",
            &["AIRLOCK_BUCKET", "AIRLOCK_TABLE", "AIRLOCK_EVENT_BUS"],
        ),
        (
            "DefinitionsRefreshFunction",
            "DefinitionsRefreshRole",
            &["AIRLOCK_DEFINITIONS_BUCKET"],
        ),
    ];
    let functions: BTreeSet<_> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, _)| id.as_str().unwrap())
        .collect();
    assert_eq!(
        functions,
        expected.iter().map(|(f, _, _)| *f).collect::<BTreeSet<_>>()
    );
    for (function, role, env) in expected {
        let properties = &resources[function]["Properties"];
        assert_eq!(render(&properties["Role"]), format!("${{{role}.Arn}}"));
        // SAM would attach its own policies to a role it makes; an explicit role has none.
        assert!(
            properties.get("Policies").is_none(),
            "{function} has SAM Policies"
        );
        let names: BTreeSet<_> = properties["Environment"]["Variables"]
            .as_mapping()
            .expect("environment variables")
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            env.iter().copied().collect(),
            "{function} environment"
        );
    }
    for (function, binary) in [
        ("SignFunction", "sign"),
        ("IngestFunction", "ingest"),
        ("WorkerFunction", "worker"),
    ] {
        let resource = &resources[function];
        assert_eq!(
            resource["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda")
        );
        assert_eq!(
            resource["Metadata"]["BuildProperties"]["Binary"].as_str(),
            Some(binary)
        );
        assert_eq!(
            resource["Properties"]["Runtime"].as_str(),
            Some("provided.al2023")
        );
    }
}

#[test]
fn the_bucket_policy_denies_unsettled_reads_to_all_but_the_pipeline() {
    let template = template();
    let policy = &resources(&template)["UploadBucketPolicy"]["Properties"]["PolicyDocument"];
    let statements = policy["Statement"].as_sequence().expect("statements");
    let by_sid = |sid: &str| {
        statements
            .iter()
            .find(|s| s["Sid"].as_str() == Some(sid))
            .unwrap_or_else(|| panic!("bucket policy statement {sid}"))
    };

    let tls = by_sid("DenyInsecureTransport");
    assert_eq!(tls["Effect"].as_str(), Some("Deny"));
    assert_eq!(strings(&tls["Action"]), ["s3:*"]);
    assert_eq!(
        tls["Condition"]["Bool"]["aws:SecureTransport"].as_str(),
        Some("false")
    );

    for (sid, prefixes, allowed) in [
        (
            "DenyUnscannedReadsButPipeline",
            &["incoming/*"][..],
            &["${WorkerRole.Arn}", "${ScannerTaskRole.Arn}"][..],
        ),
        (
            "DenyQuarantineAndStagingReadsButWorker",
            &["quarantine/*", "staging/*"][..],
            &["${WorkerRole.Arn}"][..],
        ),
    ] {
        let statement = by_sid(sid);
        assert_eq!(statement["Effect"].as_str(), Some("Deny"), "{sid}");
        assert_eq!(statement["Principal"].as_str(), Some("*"), "{sid}");
        assert_eq!(
            strings(&statement["Action"]),
            ["s3:GetObject", "s3:GetObjectVersion"],
            "{sid}"
        );
        let resources: Vec<_> = prefixes
            .iter()
            .map(|p| format!("${{UploadBucket.Arn}}/{p}"))
            .collect();
        assert_eq!(strings(&statement["Resource"]), resources, "{sid}");
        assert_eq!(
            strings(&statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]),
            allowed,
            "{sid}"
        );
    }
}

#[test]
fn the_ingest_queue_takes_notifications_only_from_this_bucket_and_account() {
    let template = template();
    let resources = resources(&template);
    let statement = &resources["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(
        statement["Principal"]["Service"].as_str(),
        Some("s3.amazonaws.com")
    );
    assert_eq!(strings(&statement["Action"]), ["sqs:SendMessage"]);
    assert_eq!(
        render(&statement["Condition"]["StringEquals"]["aws:SourceAccount"]),
        "${AWS::AccountId}"
    );
    // The source ARN is the bucket's name, built the same way as the bucket's own.
    let source_arn = &statement["Condition"]["ArnEquals"]["aws:SourceArn"];
    let bucket_name = &resources["UploadBucket"]["Properties"]["BucketName"];
    let sub_args = |v: &Value| {
        intrinsic(v)
            .filter(|(name, _)| name == "Fn::Sub")
            .map(|(_, args)| args.clone())
            .expect("built with Fn::Sub")
    };
    let (arn, name) = (sub_args(source_arn), sub_args(bucket_name));
    assert_eq!(
        arn[0]
            .as_str()
            .map(|s| s.replace("arn:${AWS::Partition}:s3:::", "")),
        name[0].as_str().map(str::to_owned)
    );
    assert_eq!(arn[1], name[1]);

    let notification = &resources["UploadBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
        [0];
    assert_eq!(render(&notification["Queue"]), "${IngestQueue.Arn}");
    assert_eq!(
        notification["Filter"]["S3Key"]["Rules"][0]["Value"].as_str(),
        Some("incoming/")
    );
}

#[test]
fn table_writes_are_scoped_to_the_items_each_role_owns() {
    let template = template();
    let roles = roles(&template);
    let scopes = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(action, keys)| {
                (
                    (*action).to_owned(),
                    keys.iter().map(|k| (*k).to_owned()).collect(),
                )
            })
            .collect()
    };
    // The API creates intents with their idempotency keys and cancels intents; the stages
    // change intents and record dead letters, and never create an intent or claim a key.
    let expected = [
        (
            "SignRole",
            scopes(&[
                ("dynamodb:GetItem", &["INTENT#*", "IDEM#*"]),
                ("dynamodb:PutItem", &["INTENT#*", "IDEM#*"]),
                ("dynamodb:UpdateItem", &["INTENT#*"]),
            ]),
        ),
        (
            "WorkerRole",
            scopes(&[
                ("dynamodb:GetItem", &["INTENT#*"]),
                ("dynamodb:UpdateItem", &["INTENT#*"]),
                ("dynamodb:PutItem", &["DEAD#*"]),
            ]),
        ),
    ];
    for (id, want) in expected {
        assert_eq!(table_item_scopes(roles[id]), want, "{id}");
    }
    for (id, role) in &roles {
        if !["SignRole", "WorkerRole"].contains(&id.as_str()) {
            assert!(
                table_item_scopes(role).is_empty(),
                "{id} is granted something on the table"
            );
        }
    }
}

/// A global secondary index: name, key schema, projection.
type IndexShape = (String, Vec<(String, String)>, String);

/// The intent table is the one airlock-aws's `DynamoIntentStore` uses: a string partition
/// key `pk` and no sort key (items `INTENT#...`, `IDEM#...`, `DEAD#...`, `QUAR#...`,
/// `AUDIT#...`, `CHECKPOINT#...`), the review's two indexes, TTL on `ttl`.
#[test]
fn the_intent_table_has_the_adapters_key_schema() {
    let template = template();
    let table = &resources(&template)["IntentTable"];
    assert_eq!(table["Type"].as_str(), Some("AWS::DynamoDB::Table"));
    let properties = &table["Properties"];
    let pairs = |list: &Value, a: &str, b: &str| -> Vec<(String, String)> {
        list.as_sequence()
            .expect("a list")
            .iter()
            .map(|e| (render(&e[a]), render(&e[b])))
            .collect()
    };
    assert_eq!(
        pairs(&properties["KeySchema"], "AttributeName", "KeyType"),
        [("pk".to_owned(), "HASH".to_owned())]
    );
    assert_eq!(
        pairs(
            &properties["AttributeDefinitions"],
            "AttributeName",
            "AttributeType"
        ),
        ["pk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
            .map(|name| (name.to_owned(), "S".to_owned()))
    );
    // The indexes `DynamoIntentStore::create_table` makes (`TIMELINE_INDEX`, `OWNER_INDEX`):
    // timelines, and timelines per owner, each a string partition and sort key, every
    // attribute projected.
    let indexes = properties["GlobalSecondaryIndexes"]
        .as_sequence()
        .expect("GlobalSecondaryIndexes");
    let described: Vec<IndexShape> = indexes
        .iter()
        .map(|index| {
            (
                render(&index["IndexName"]),
                pairs(&index["KeySchema"], "AttributeName", "KeyType"),
                render(&index["Projection"]["ProjectionType"]),
            )
        })
        .collect();
    let index = |name: &str, partition: &str, sort: &str| {
        (
            name.to_owned(),
            vec![
                (partition.to_owned(), "HASH".to_owned()),
                (sort.to_owned(), "RANGE".to_owned()),
            ],
            "ALL".to_owned(),
        )
    };
    assert_eq!(
        described,
        [
            index("gsi1", "gsi1pk", "gsi1sk"),
            index("gsi2", "gsi2pk", "gsi2sk"),
        ]
    );
    assert_eq!(
        properties["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some("ttl")
    );
    assert_eq!(
        properties["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
}

#[test]
fn every_bucket_is_private_encrypted_versioned_and_tls_only() {
    let template = template();
    let resources = resources(&template);
    let buckets: BTreeSet<&str> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::S3::Bucket"))
        .map(|(id, _)| id.as_str().expect("logical id"))
        .collect();
    assert_eq!(
        buckets,
        BTreeSet::from(["UploadBucket", "DefinitionsBucket"])
    );
    for bucket in buckets {
        let properties = &resources[bucket]["Properties"];
        let block = &properties["PublicAccessBlockConfiguration"];
        for setting in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            assert_eq!(block[setting].as_bool(), Some(true), "{bucket} {setting}");
        }
        assert_eq!(
            properties["OwnershipControls"]["Rules"][0]["ObjectOwnership"].as_str(),
            Some("BucketOwnerEnforced"),
            "{bucket}: ACLs off"
        );
        assert_eq!(
            properties["VersioningConfiguration"]["Status"].as_str(),
            Some("Enabled"),
            "{bucket}"
        );
        for conditions in BOTH {
            let encryption = select(
                &properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
                    ["ServerSideEncryptionByDefault"],
                conditions,
            )
            .expect("default encryption");
            let algorithm = encryption["SSEAlgorithm"].as_str();
            if conditions.use_kms {
                assert_eq!(algorithm, Some("aws:kms"), "{bucket}");
                assert_eq!(render(&encryption["KMSMasterKeyID"]), "${KmsKeyArn}");
            } else {
                assert_eq!(algorithm, Some("AES256"), "{bucket}");
            }
        }

        // Its policy refuses every request that is not over TLS, on the bucket and its objects.
        let policy = resources
            .iter()
            .map(|(_, r)| r)
            .find(|r| {
                r["Type"].as_str() == Some("AWS::S3::BucketPolicy")
                    && render(&r["Properties"]["Bucket"]) == format!("${{{bucket}}}")
            })
            .unwrap_or_else(|| panic!("{bucket} has a bucket policy"));
        let tls = policy["Properties"]["PolicyDocument"]["Statement"]
            .as_sequence()
            .expect("statements")
            .iter()
            .find(|s| s["Sid"].as_str() == Some("DenyInsecureTransport"))
            .unwrap_or_else(|| panic!("{bucket}: a DenyInsecureTransport statement"));
        assert_eq!(tls["Effect"].as_str(), Some("Deny"));
        assert_eq!(tls["Principal"].as_str(), Some("*"));
        assert_eq!(strings(&tls["Action"]), ["s3:*"]);
        assert_eq!(
            strings(&tls["Resource"]),
            [format!("${{{bucket}.Arn}}"), format!("${{{bucket}.Arn}}/*")]
        );
        assert_eq!(
            tls["Condition"]["Bool"]["aws:SecureTransport"].as_str(),
            Some("false")
        );
    }
}

#[test]
fn every_queue_is_encrypted_and_every_work_queue_has_an_alarmed_dead_letter_queue() {
    let template = template();
    let resources = resources(&template);
    let queues: BTreeMap<&str, &Value> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::SQS::Queue"))
        .map(|(id, r)| (id.as_str().expect("logical id"), &r["Properties"]))
        .collect();
    for (id, properties) in &queues {
        assert!(
            properties["SqsManagedSseEnabled"].as_bool() == Some(true)
                || properties.get("KmsMasterKeyId").is_some(),
            "{id} is not encrypted"
        );
    }
    let work_queues: BTreeSet<&str> = queues
        .iter()
        .filter(|(_, p)| p.get("RedrivePolicy").is_some())
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        work_queues,
        BTreeSet::from([
            "IngestQueue",
            "InspectQueue",
            "ScanQueue",
            "MediaQueue",
            "PromoteQueue",
            "QuarantineQueue",
        ])
    );
    let alarmed: BTreeSet<String> = resources
        .iter()
        .map(|(_, r)| r)
        .filter(|r| {
            r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")
                && r["Properties"]["MetricName"].as_str()
                    == Some("ApproximateNumberOfMessagesVisible")
        })
        .flat_map(|r| {
            r["Properties"]["Dimensions"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter(|d| d["Name"].as_str() == Some("QueueName"))
                .map(|d| render(&d["Value"]))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut dead_letter_queues = BTreeSet::new();
    for queue in &work_queues {
        let redrive = &queues[queue]["RedrivePolicy"];
        let target = render(&redrive["deadLetterTargetArn"]);
        let dead_letter = target
            .strip_prefix("${")
            .and_then(|t| t.strip_suffix(".Arn}"))
            .unwrap_or_else(|| panic!("{queue}: dead-letter target {target}"));
        let dead_letter_properties = queues
            .get(dead_letter)
            .unwrap_or_else(|| panic!("{queue}: {dead_letter} is a queue of this template"));
        assert!(
            dead_letter_properties.get("RedrivePolicy").is_none(),
            "{dead_letter} is a last stop"
        );
        assert_eq!(
            dead_letter_properties["MessageRetentionPeriod"].as_u64(),
            Some(1_209_600),
            "{dead_letter} keeps messages the longest SQS allows (14 days)"
        );
        assert!(
            redrive["maxReceiveCount"].as_u64().is_some_and(|n| n >= 1),
            "{queue}: maxReceiveCount"
        );
        assert!(
            alarmed.contains(&format!("${{{dead_letter}.QueueName}}")),
            "{dead_letter} has a depth alarm"
        );
        assert!(
            dead_letter_queues.insert(dead_letter.to_owned()),
            "{dead_letter} serves one queue"
        );
    }
    assert_eq!(
        queues.len(),
        work_queues.len() + dead_letter_queues.len(),
        "every queue is a work queue or a dead-letter queue"
    );
}

/// The template's `DefinitionSubstitutions` are exactly the `${...}` placeholders of
/// `statemachine/pipeline.asl.json`, and the local executor accepts the file with them.
#[test]
fn the_state_machine_substitutions_match_the_definitions_placeholders() {
    let template = template();
    let machine = &resources(&template)["PipelineStateMachine"]["Properties"];
    assert_eq!(
        machine["DefinitionUri"].as_str(),
        Some("statemachine/pipeline.asl.json")
    );
    let substitutions: BTreeMap<String, String> = machine["DefinitionSubstitutions"]
        .as_mapping()
        .expect("DefinitionSubstitutions")
        .iter()
        .map(|(k, v)| (k.as_str().expect("a name").to_owned(), render(v)))
        .collect();
    for (name, value) in &substitutions {
        let queue = name
            .strip_suffix("Url")
            .unwrap_or_else(|| panic!("{name} names a queue URL"));
        assert_eq!(value, &format!("${{{queue}}}"), "{name}");
    }

    let path = repo_root().join("statemachine/pipeline.asl.json");
    let definition = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut placeholders = BTreeSet::new();
    let mut rest = definition.as_str();
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("a placeholder is closed");
        placeholders.insert(after[..end].to_owned());
        rest = &after[end..];
    }
    assert_eq!(
        placeholders,
        substitutions.keys().cloned().collect::<BTreeSet<_>>()
    );

    let local: BTreeMap<String, String> = substitutions
        .keys()
        .map(|name| (name.clone(), format!("https://sqs.example/{name}")))
        .collect();
    airlock_asl::Definition::parse_with_substitutions(&definition, &local)
        .expect("the definition parses with the template's substitutions");
    let mut missing_one = local.clone();
    missing_one.pop_first();
    assert!(
        airlock_asl::Definition::parse_with_substitutions(&definition, &missing_one).is_err(),
        "a placeholder without its substitution is refused"
    );
}

/// No grant hides outside the roles' inline policies.
#[test]
fn no_policies_outside_the_roles() {
    let template = template();
    for (id, resource) in resources(&template) {
        let kind = resource["Type"].as_str().expect("a type");
        assert!(
            ![
                "AWS::IAM::Policy",
                "AWS::IAM::ManagedPolicy",
                "AWS::IAM::User",
                "AWS::IAM::Group",
                "AWS::Serverless::Connector",
            ]
            .contains(&kind),
            "{id:?} is a {kind}"
        );
        if kind == "AWS::Serverless::StateMachine" {
            assert!(
                resource["Properties"].get("Policies").is_none(),
                "{id:?}: SAM Policies"
            );
        }
    }
}

#[test]
fn the_scanner_runs_with_the_agreed_environment() {
    let template = template();
    let task = &resources(&template)["ScannerTaskDefinition"]["Properties"];
    assert_eq!(render(&task["TaskRoleArn"]), "${ScannerTaskRole.Arn}");
    assert_eq!(
        render(&task["ExecutionRoleArn"]),
        "${ScannerExecutionRole.Arn}"
    );
    let containers = task["ContainerDefinitions"]
        .as_sequence()
        .expect("containers");
    assert_eq!(containers.len(), 1, "clamd and scan-worker share one image");
    let environment: BTreeMap<String, String> = containers[0]["Environment"]
        .as_sequence()
        .expect("environment")
        .iter()
        .map(|e| (render(&e["Name"]), render(&e["Value"])))
        .collect();
    assert_eq!(
        environment,
        BTreeMap::from(
            [
                ("AIRLOCK_SCAN_QUEUE_URL", "${ScanQueue}"),
                ("AIRLOCK_BUCKET", "${UploadBucket}"),
                ("AIRLOCK_TABLE", "${IntentTable}"),
                ("AIRLOCK_DEFINITIONS_BUCKET", "${DefinitionsBucket}"),
                (
                    "AIRLOCK_MAX_DEFINITIONS_AGE_HOURS",
                    "${MaxDefinitionsAgeHours}"
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        )
    );
    let default_age = &template["Parameters"]["MaxDefinitionsAgeHours"]["Default"];
    assert_eq!(default_age.as_u64(), Some(48));
}
