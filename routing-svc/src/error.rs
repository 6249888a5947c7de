//! The one error type of routing-svc and its mapping to gRPC statuses.

use std::time::Duration;

use switchboard_server_kit::db::{DbFailure, classify};
use switchboard_server_kit::errors::{internal, invalid_field, limit_exceeded, status};
use tonic::{Code, Status};

/// How long a caller refused for lack of capacity should wait before retrying.
const CAPACITY_RETRY_AFTER: Duration = Duration::from_secs(2);

/// Everything a routing call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed.
    #[error("{field}: {description}")]
    InvalidArgument {
        /// The field's name as in the request.
        field: String,
        /// What is wrong with it.
        description: String,
    },
    /// No such object in the caller's tenant.
    #[error("{0}")]
    NotFound(String),
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    WrongState(String),
    /// The caller lacks the role.
    #[error("{0}")]
    RoleRequired(String),
    /// No verified caller identity.
    #[error("{0}")]
    Unauthenticated(String),
    /// Capacity or another limit is exhausted.
    #[error("{0}")]
    LimitExceeded(String),
    /// The object already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// Another change won a race; a retry may succeed.
    #[error("{0}")]
    Conflict(String),
    /// A dependency is down or the server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The RPC is in the contract but not served yet.
    #[error("{service}/{rpc} is part of the API contract but not served yet")]
    NotImplemented {
        /// Service name without package.
        service: &'static str,
        /// Method name.
        rpc: &'static str,
    },
    /// A storage failure.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Anything else that should not happen.
    #[error("{0}")]
    Internal(String),
}

/// Result with the routing error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// INVALID_ARGUMENT for `field`.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            description: description.into(),
        }
    }

    /// NOT_FOUND for the `kind` ("queue", "capacity profile") named `id`.
    pub fn not_found(kind: &str, id: &str) -> Error {
        Error::NotFound(format!("{kind} {id} not found"))
    }

    /// The gRPC status of this error; the only place errors become statuses.
    pub fn to_status(&self) -> Status {
        match self {
            Error::InvalidArgument { field, description } => invalid_field(field, description),
            Error::NotFound(message) => status(Code::NotFound, message, "NOT_FOUND"),
            Error::WrongState(message) => status(Code::FailedPrecondition, message, "WRONG_STATE"),
            Error::RoleRequired(message) => {
                status(Code::PermissionDenied, message, "ROLE_REQUIRED")
            }
            Error::Unauthenticated(message) => {
                status(Code::Unauthenticated, message, "UNAUTHENTICATED")
            }
            // Every routing limit is capacity or max open conversations, which free up as
            // agents close conversations: say when a retry is worth it.
            Error::LimitExceeded(message) => limit_exceeded(message, Some(CAPACITY_RETRY_AFTER)),
            Error::AlreadyExists(message) => status(Code::AlreadyExists, message, "ALREADY_EXISTS"),
            Error::Conflict(message) => status(Code::Aborted, message, "CONFLICT"),
            Error::Unavailable(message) => status(Code::Unavailable, message, "UNAVAILABLE"),
            Error::NotImplemented { .. } => {
                status(Code::Unimplemented, self.to_string(), "NOT_IMPLEMENTED")
            }
            Error::Database(err) => match classify(err) {
                DbFailure::Conflict => status(
                    Code::Aborted,
                    "a concurrent change won the race; retry",
                    "CONFLICT",
                ),
                DbFailure::Unavailable => status(
                    Code::Unavailable,
                    "the routing database is unavailable",
                    "UNAVAILABLE",
                ),
                DbFailure::Other => internal(err),
            },
            Error::Internal(message) => internal(message),
        }
    }
}

impl From<crate::domain::profile::ProfileSubjectError> for Error {
    fn from(err: crate::domain::profile::ProfileSubjectError) -> Error {
        use crate::domain::profile::ProfileSubjectError as E;
        match err {
            E::NotFound(_) => Error::NotFound(err.to_string()),
            E::Inactive(_) | E::NotAnAgent(_) => Error::WrongState(err.to_string()),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        err.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn every_kind_maps_to_its_code_and_reason() {
        let cases = [
            (
                Error::invalid("queue_id", "must be a UUID"),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (
                Error::NotFound("queue q not found".into()),
                Code::NotFound,
                "NOT_FOUND",
            ),
            (
                Error::WrongState("offer o is accepted".into()),
                Code::FailedPrecondition,
                "WRONG_STATE",
            ),
            (
                Error::RoleRequired("needs ADMINISTRATOR".into()),
                Code::PermissionDenied,
                "ROLE_REQUIRED",
            ),
            (
                Error::LimitExceeded("full".into()),
                Code::ResourceExhausted,
                "LIMIT_EXCEEDED",
            ),
            (
                Error::AlreadyExists("taken".into()),
                Code::AlreadyExists,
                "ALREADY_EXISTS",
            ),
            (Error::Conflict("race".into()), Code::Aborted, "CONFLICT"),
            (
                Error::Unavailable("down".into()),
                Code::Unavailable,
                "UNAVAILABLE",
            ),
            (
                Error::NotImplemented {
                    service: "QueueService",
                    rpc: "UpdateQueue",
                },
                Code::Unimplemented,
                "NOT_IMPLEMENTED",
            ),
        ];
        for (err, code, reason) in cases {
            let st = err.to_status();
            assert_eq!(st.code(), code, "{err}");
            assert_eq!(st.get_details_error_info().unwrap().reason, reason);
        }
        assert_eq!(
            Error::NotImplemented {
                service: "QueueService",
                rpc: "UpdateQueue"
            }
            .to_status()
            .message(),
            "QueueService/UpdateQueue is part of the API contract but not served yet"
        );
        let full = Error::LimitExceeded("agent a has no free units".into()).to_status();
        assert_eq!(
            full.get_details_retry_info().unwrap().retry_delay,
            Some(CAPACITY_RETRY_AFTER),
            "capacity frees up: the client is told when to retry"
        );
    }

    #[test]
    fn internal_errors_hide_details() {
        let st = Error::Internal("row 7 of offers is corrupt".into()).to_status();
        assert_eq!(st.code(), Code::Internal);
        assert_eq!(st.message(), "internal error");
    }
}
