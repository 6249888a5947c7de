//! The one error type of conversation-svc and its mapping to gRPC statuses.

use switchboard_server_kit::db::{DbFailure, classify};
use switchboard_server_kit::errors::limit_exceeded;
use switchboard_server_kit::{internal, invalid_field, status};
use tonic::{Code, Status};

use crate::domain::access::MessageRefusal;

/// Everything a call can fail with. Each variant maps to one status code and one
/// `ErrorInfo` reason in [`Error::into_status`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed.
    #[error("{field}: {description}")]
    InvalidArgument {
        /// The field, as named in the request (`contact.display_name`).
        field: String,
        /// What is wrong with it.
        description: String,
    },
    /// No such object, another tenant's, or hidden from the caller.
    #[error("{0}")]
    NotFound(String),
    /// The object's state (or the caller's part in it) does not allow the call.
    #[error("{0}")]
    WrongState(String),
    /// The caller's roles do not allow the call.
    #[error("{0}")]
    RoleRequired(String),
    /// A supervisor action the tenant's administrators have not enabled.
    #[error("{0}")]
    ActionDisabled(String),
    /// The agent has no free capacity for the conversation and no override was asked.
    #[error("{0}")]
    CapacityFull(String),
    /// The caller's identity is unusable.
    #[error("{0}")]
    Unauthenticated(String),
    /// The object already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// A concurrent change won a race; a retry with the same request_id is safe.
    #[error("{0}")]
    Conflict(String),
    /// A service this call depends on is down.
    #[error("{0}")]
    Unavailable(String),
    /// The RPC is in the contract but not served yet.
    #[error("{service}/{rpc} is part of the API contract but not served yet")]
    NotImplemented {
        /// Service name without the package.
        service: &'static str,
        /// RPC name.
        rpc: &'static str,
    },
    /// Too much work is waiting (for example calls to routing-svc not yet sent); the
    /// caller should retry after `retry_after`.
    #[error("{message}")]
    Backlogged {
        /// What is waiting and the bound.
        message: String,
        /// How long to wait before retrying.
        retry_after: std::time::Duration,
    },
    /// The database failed.
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
    /// Any other internal failure, such as a stored row that cannot be decoded.
    #[error("{0}")]
    Internal(String),
}

/// Results of conversation-svc.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// INVALID_ARGUMENT for `field`.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            description: description.into(),
        }
    }

    /// NOT_FOUND for a conversation, whether missing, of another tenant or hidden.
    pub fn conversation_not_found(id: &str) -> Error {
        Error::NotFound(format!("conversation {id} not found"))
    }

    /// FAILED_PRECONDITION about conversation `id`.
    pub fn wrong_state(id: &str, why: impl std::fmt::Display) -> Error {
        Error::WrongState(format!("conversation {id}: {why}"))
    }

    /// A message refusal for conversation `id`.
    pub fn refused(id: &str, why: MessageRefusal) -> Error {
        Error::wrong_state(id, why)
    }

    /// The gRPC status of this error: the only place where errors become statuses.
    pub fn into_status(self) -> Status {
        match self {
            Error::InvalidArgument { field, description } => invalid_field(&field, description),
            Error::NotFound(msg) => status(Code::NotFound, msg, "NOT_FOUND"),
            Error::WrongState(msg) => status(Code::FailedPrecondition, msg, "WRONG_STATE"),
            Error::RoleRequired(msg) => status(Code::PermissionDenied, msg, "ROLE_REQUIRED"),
            Error::ActionDisabled(msg) => status(Code::PermissionDenied, msg, "ACTION_DISABLED"),
            Error::CapacityFull(msg) => status(Code::ResourceExhausted, msg, "CAPACITY_FULL"),
            Error::Unauthenticated(msg) => status(Code::Unauthenticated, msg, "UNAUTHENTICATED"),
            Error::AlreadyExists(msg) => status(Code::AlreadyExists, msg, "ALREADY_EXISTS"),
            Error::Conflict(msg) => status(Code::Aborted, msg, "CONFLICT"),
            Error::Unavailable(msg) => status(Code::Unavailable, msg, "UNAVAILABLE"),
            Error::Backlogged {
                message,
                retry_after,
            } => limit_exceeded(message, Some(retry_after)),
            err @ Error::NotImplemented { .. } => {
                status(Code::Unimplemented, err.to_string(), "NOT_IMPLEMENTED")
            }
            Error::Storage(err) => match classify(&err) {
                DbFailure::Conflict => status(
                    Code::Aborted,
                    "a concurrent change won the race; retry",
                    "CONFLICT",
                ),
                DbFailure::Unavailable => status(
                    Code::Unavailable,
                    "the conversation database is unavailable",
                    "UNAVAILABLE",
                ),
                DbFailure::Other => internal(Error::Storage(err)),
            },
            err @ Error::Internal(_) => internal(err),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        err.into_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    fn reason(st: &Status) -> String {
        st.get_details_error_info().unwrap().reason
    }

    #[test]
    fn codes_and_reasons() {
        let cases = [
            (
                Error::invalid("queue_id", "must be a UUID"),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (
                Error::conversation_not_found("c1"),
                Code::NotFound,
                "NOT_FOUND",
            ),
            (
                Error::wrong_state("c1", "closed"),
                Code::FailedPrecondition,
                "WRONG_STATE",
            ),
            (
                Error::RoleRequired("x".into()),
                Code::PermissionDenied,
                "ROLE_REQUIRED",
            ),
            (
                Error::Unauthenticated("x".into()),
                Code::Unauthenticated,
                "UNAUTHENTICATED",
            ),
            (
                Error::AlreadyExists("x".into()),
                Code::AlreadyExists,
                "ALREADY_EXISTS",
            ),
            (Error::Conflict("x".into()), Code::Aborted, "CONFLICT"),
            (
                Error::ActionDisabled("x".into()),
                Code::PermissionDenied,
                "ACTION_DISABLED",
            ),
            (
                Error::CapacityFull("x".into()),
                Code::ResourceExhausted,
                "CAPACITY_FULL",
            ),
            (
                Error::Backlogged {
                    message: "x".into(),
                    retry_after: std::time::Duration::from_secs(1),
                },
                Code::ResourceExhausted,
                "LIMIT_EXCEEDED",
            ),
            (
                Error::Unavailable("x".into()),
                Code::Unavailable,
                "UNAVAILABLE",
            ),
            (
                Error::NotImplemented {
                    service: "SupervisorService",
                    rpc: "JoinConversation",
                },
                Code::Unimplemented,
                "NOT_IMPLEMENTED",
            ),
        ];
        for (err, code, expected) in cases {
            let st = err.into_status();
            assert_eq!(st.code(), code);
            assert_eq!(reason(&st), expected);
        }
    }

    #[test]
    fn messages_name_what_is_wrong() {
        let st = Error::invalid("contact.display_name", "is required").into_status();
        assert_eq!(st.message(), "contact.display_name: is required");
        let st = Error::wrong_state("c1", "cannot end a conversation in state OPEN").into_status();
        assert_eq!(
            st.message(),
            "conversation c1: cannot end a conversation in state OPEN"
        );
        let st = Error::NotImplemented {
            service: "SupervisorService",
            rpc: "JoinConversation",
        }
        .into_status();
        assert_eq!(
            st.message(),
            "SupervisorService/JoinConversation is part of the API contract but not served yet"
        );
    }

    #[test]
    fn internal_errors_hide_details() {
        let st = Error::Internal("row 7 has state 99".into()).into_status();
        assert_eq!(st.code(), Code::Internal);
        assert_eq!(st.message(), "internal error");
    }
}
