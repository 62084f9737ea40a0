//! Pipeline executions started on Step Functions (`StartExecution`), named after the object
//! version so that duplicate S3 events collapse into one execution.

use airlock_core::ports::{ExecutionStarter, StartError, StartOutcome};
use async_trait::async_trait;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;

use crate::error::{describe, retry_of};

/// Starts executions of one state machine.
#[derive(Debug, Clone)]
pub struct StepFunctionsStarter {
    client: Client,
    state_machine_arn: String,
}

impl StepFunctionsStarter {
    /// Starts executions of `state_machine_arn` through `client` (built once by the caller).
    #[must_use]
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        Self {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }
}

#[async_trait]
impl ExecutionStarter for StepFunctionsStarter {
    async fn start(&self, name: &str, input: &str) -> Result<StartOutcome, StartError> {
        let sent = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await;
        match sent {
            // A standard workflow answers a repeated name with the same input while the
            // first execution runs with that execution: started, as far as we can tell.
            Ok(_) => Ok(StartOutcome::Started),
            // Closed already (or running with another input, which a name derived from the
            // object version cannot have): the object was handled.
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(StartExecutionError::ExecutionAlreadyExists(_))
                ) =>
            {
                Ok(StartOutcome::AlreadyExists)
            }
            Err(err) => Err(StartError {
                name: name.to_owned(),
                message: format!("StartExecution: {}", describe(&err)),
                retry: retry_of(&err),
                source: Some(Box::new(err)),
            }),
        }
    }
}
