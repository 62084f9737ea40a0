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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    fn answer(status: u16, code: &str) -> SdkError<GetObjectError, HttpResponse> {
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        let err = GetObjectError::generic(ErrorMetadata::builder().code(code).build());
        SdkError::service_error(err, raw)
    }

    #[test]
    fn throttling_and_server_trouble_are_transient() {
        for (status, code) in [
            (503, "SlowDown"),
            (500, "InternalError"),
            (400, "ThrottlingException"),
            (400, "ProvisionedThroughputExceededException"),
            (400, "TransactionConflictException"),
            (409, "ConditionalRequestConflict"),
            (429, "TooManyRequests"),
            (502, ""),
        ] {
            assert_eq!(
                retry_of(&answer(status, code)),
                Retry::Transient,
                "{status} {code}"
            );
        }
        let timeout: SdkError<GetObjectError, HttpResponse> =
            SdkError::timeout_error("operation timed out");
        assert_eq!(retry_of(&timeout), Retry::Transient);
    }

    #[test]
    fn refusals_are_permanent() {
        for (status, code) in [
            (403, "AccessDenied"),
            (404, "NoSuchBucket"),
            (400, "ValidationException"),
            (400, "InvalidToken"),
            (400, "TaskTimedOut"),
        ] {
            assert_eq!(
                retry_of(&answer(status, code)),
                Retry::Permanent,
                "{status} {code}"
            );
        }
        let err = answer(403, "AccessDenied");
        assert_eq!(status_of(&err), Some(403));
        assert_eq!(code_of(&err), Some("AccessDenied"));
    }
}
