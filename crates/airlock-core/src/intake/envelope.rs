//! Envelopes around S3 events: Lambda's SQS batches and SNS notifications.

use super::json::{Doc, Obj};
use super::{Intake, IntakeItem, SkipReason, parse_embedded};

/// One message of an SQS batch: its body is a document of its own, so a malformed body costs
/// one item, named by the message id.
pub(super) fn sqs(doc: &Doc, message: &Obj<'_>, items: &mut Vec<IntakeItem>) {
    let what = message
        .peek_str("messageId")
        .map(|id| format!("SQS message {id}"));
    parse_embedded(doc, message.path(), message, "body", what, items);
}

/// An SNS notification, either the `Sns` member of a Lambda SNS record or the envelope SNS
/// writes into an SQS body. `container` is the path of what names the item.
pub(super) fn sns(doc: &Doc, sns: &Obj<'_>, container: &str, items: &mut Vec<IntakeItem>) {
    if let Some(kind) = sns.peek_str("Type").filter(|kind| *kind != "Notification") {
        // A subscription confirmation and the like: nothing from S3 in it.
        items.push(doc.item(
            container,
            Ok(Intake::Skipped(SkipReason::NotS3 {
                source: format!("SNS {kind}"),
            })),
        ));
        return;
    }
    let what = sns
        .peek_str("MessageId")
        .map(|id| format!("SNS message {id}"));
    parse_embedded(doc, container, sns, "Message", what, items);
}
