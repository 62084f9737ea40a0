//! The template's resources, created on the emulator as CloudFormation would name them
//! (`{stack}-{LogicalId}`), with the state machine from the same definition file.

use std::collections::BTreeMap;

use anyhow::Context as _;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Event, FilterRule, FilterRuleName, NotificationConfiguration,
    NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter, VersioningConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;

/// The work queues the state machine sends tasks to, with the substitution naming each
/// one's URL in the definition (`DefinitionSubstitutions` in `template.yaml`).
pub const WORK_QUEUES: [(&str, &str); 5] = [
    ("InspectQueue", "InspectQueueUrl"),
    ("ScanQueue", "ScanQueueUrl"),
    ("MediaQueue", "MediaQueueUrl"),
    ("PromoteQueue", "PromoteQueueUrl"),
    ("QuarantineQueue", "QuarantineQueueUrl"),
];

/// Resource names of one stack.
#[derive(Debug, Clone)]
pub struct Names {
    pub stack: String,
}

impl Names {
    #[must_use]
    pub fn new(stack: impl Into<String>) -> Self {
        Self {
            stack: stack.into(),
        }
    }

    /// `{stack}-{LogicalId}`; lowercase for buckets, which S3 requires.
    #[must_use]
    pub fn of(&self, logical_id: &str) -> String {
        format!("{}-{logical_id}", self.stack)
    }

    #[must_use]
    pub fn bucket(&self) -> String {
        self.of("UploadBucket").to_lowercase()
    }

    #[must_use]
    pub fn table(&self) -> String {
        self.of("IntentTable")
    }

    /// The bus name the template gives (`${AWS::StackName}-uploads`).
    #[must_use]
    pub fn event_bus(&self) -> String {
        format!("{}-uploads", self.stack)
    }
}

/// What was created.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub names: Names,
    pub bucket: String,
    pub table: String,
    pub event_bus: String,
    pub ingest_queue_url: String,
    /// Work queue URLs by logical id (`InspectQueue`, ...).
    pub queue_urls: BTreeMap<String, String>,
    pub state_machine_arn: String,
    /// The definition as deployed (substitutions made).
    pub definition: String,
}

impl Deployment {
    /// Creates every resource the flow needs on the emulator `sdk` points at.
    pub async fn create(
        sdk: &aws_config::SdkConfig,
        names: Names,
        definition: &str,
    ) -> anyhow::Result<Self> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let s3 = airlock_lambda::wiring::s3_client(sdk);
        let bucket = names.bucket();
        let table = names.table();
        let event_bus = names.event_bus();

        let (ingest_queue_url, ingest_queue_arn) = queue(&sqs, &names.of("IngestQueue")).await?;
        let mut queue_urls = BTreeMap::new();
        let mut substitutions = serde_json::Map::new();
        for (logical_id, substitution) in WORK_QUEUES {
            let (url, _) = queue(&sqs, &names.of(logical_id)).await?;
            substitutions.insert(substitution.to_owned(), url.clone().into());
            queue_urls.insert(logical_id.to_owned(), url);
        }

        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .with_context(|| format!("creating bucket {bucket}"))?;
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .context("turning versioning on")?;
        let incoming_only = NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .filter_rules(
                        FilterRule::builder()
                            .name(FilterRuleName::Prefix)
                            .value(airlock_core::keys::INCOMING_PREFIX)
                            .build(),
                    )
                    .build(),
            )
            .build();
        s3.put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(&ingest_queue_arn)
                            .events(Event::S3ObjectCreated)
                            .filter(incoming_only)
                            .build()
                            .context("the bucket notification")?,
                    )
                    .build(),
            )
            .send()
            .await
            .context("sending the bucket's events to the ingest queue")?;

        airlock_aws::DynamoIntentStore::new(aws_sdk_dynamodb::Client::new(sdk), &table)
            .create_table()
            .await
            .with_context(|| format!("creating table {table}"))?;
        aws_sdk_eventbridge::Client::new(sdk)
            .create_event_bus()
            .name(&event_bus)
            .send()
            .await
            .with_context(|| format!("creating event bus {event_bus}"))?;

        let definition = substitute(definition, &substitutions)?;
        let state_machine_arn =
            create_state_machine(sdk, &names, &names.of("PipelineStateMachine"), &definition)
                .await?;
        Ok(Self {
            names,
            bucket,
            table,
            event_bus,
            ingest_queue_url,
            queue_urls,
            state_machine_arn,
            definition,
        })
    }

    /// The URL of a work queue by logical id.
    ///
    /// # Panics
    /// If `logical_id` is not one of [`WORK_QUEUES`].
    #[must_use]
    pub fn queue_url(&self, logical_id: &str) -> &str {
        &self.queue_urls[logical_id]
    }
}

async fn create_state_machine(
    sdk: &aws_config::SdkConfig,
    names: &Names,
    name: &str,
    definition: &str,
) -> anyhow::Result<String> {
    Ok(aws_sdk_sfn::Client::new(sdk)
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn(format!(
            "arn:aws:iam::123456789012:role/{}",
            names.of("StateMachineRole")
        ))
        .send()
        .await
        .with_context(|| format!("creating state machine {name}"))?
        .state_machine_arn)
}

/// A queue with its URL and ARN.
async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> anyhow::Result<(String, String)> {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .with_context(|| format!("queue {name} has no URL"))?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading queue {name}'s ARN"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .with_context(|| format!("queue {name} has no ARN"))?;
    Ok((url, arn))
}

/// `${Name}` placeholders replaced as CloudFormation's `DefinitionSubstitutions` does; a
/// placeholder without a value is an error.
fn substitute(
    definition: &str,
    values: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<String> {
    let mut out = String::with_capacity(definition.len());
    let mut rest = definition;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .context("the definition has an unclosed '${'")?;
        let name = &after[..end];
        let value = values
            .get(name)
            .and_then(serde_json::Value::as_str)
            .with_context(|| format!("no substitution for ${{{name}}} in the definition"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_a_missing_one_is_named() {
        let mut values = serde_json::Map::new();
        values.insert("A".into(), "x".into());
        assert_eq!(
            substitute(r#"{"q":"${A}","r":"${A}/"}"#, &values).unwrap(),
            r#"{"q":"x","r":"x/"}"#
        );
        let err = substitute("${B}", &values).unwrap_err();
        assert!(err.to_string().contains("${B}"), "{err}");
    }
}
