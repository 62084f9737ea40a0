//! Telling SDK failures that may go away (throttling, 5xx, timeouts, lost connections) from
//! those that will not (permissions, validation, missing resources).

use airlock_core::ports::Retry;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Error codes AWS services use for throttling and passing trouble, whatever the status.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "TransactionInProgressException",
    "TransactionConflictException",
    "ConditionalRequestConflict",
    "OperationAborted",
];

/// Whether retrying `err` may help.
pub(crate) fn retry_of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Retry {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Retry::Transient,
        SdkError::DispatchFailure(failure) => {
            if failure.is_user() {
                Retry::Permanent
            } else {
                Retry::Transient
            }
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or_default();
            if status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code) {
                Retry::Transient
            } else {
                Retry::Permanent
            }
        }
        // ConstructionFailure and anything newer: a bug or a bad configuration.
        _ => Retry::Permanent,
    }
}

/// The HTTP status of a service's answer, if the request got one.
pub(crate) fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// The service's error code (`NoSuchKey`, `ConditionalCheckFailedException`, ...), if any.
pub(crate) fn code_of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// The error and every cause, on one line.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    aws_sdk_s3::error::DisplayErrorContext(err).to_string()
}
