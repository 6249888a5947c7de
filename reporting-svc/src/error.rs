//! reporting-svc's errors and the one place they become gRPC statuses.

use switchboard_server_kit::errors::{internal, invalid_field, limit_exceeded, status};
use tonic::{Code, Status};

/// Everything a reporting call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed.
    #[error("{field}: {description}")]
    InvalidArgument {
        /// The field, e.g. `filter.time_zone`.
        field: String,
        /// What is wrong with it.
        description: String,
    },
    /// The caller has no valid gateway identity.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller lacks the role the call needs.
    #[error("{0}")]
    RoleRequired(String),
    /// A CSV export would exceed the row limit.
    #[error(
        "the export matched {rows} rows, more than the limit of {limit}: narrow the filter \
         (a shorter time range, a coarser granularity, or fewer queues, channels or agents)"
    )]
    ExportTooLarge {
        /// Rows the export would have.
        rows: u64,
        /// The limit.
        limit: u64,
    },
    /// Too many exports read from a snapshot are running.
    #[error("{running} large exports are running already: retry in a moment")]
    ExportsBusy {
        /// How many may run at once.
        running: usize,
    },
    /// A tenant or team the filter names is not within the caller's reach (another
    /// tenant's and an unknown one alike).
    #[error("{0}")]
    NotFound(String),
    /// A service the report needs (the directory) cannot answer now.
    #[error("{0}")]
    Unavailable(String),
    /// The suite is misconfigured (logged in full, answered vaguely).
    #[error("{0}")]
    Internal(String),
    /// The database failed.
    #[error("storage failed: {0}")]
    Storage(#[from] sqlx::Error),
}

impl Error {
    /// An [`Error::InvalidArgument`] for `field`.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        match &err {
            Error::InvalidArgument { field, description } => {
                invalid_field(field, description.clone())
            }
            Error::Unauthenticated(message) => {
                status(Code::Unauthenticated, message.clone(), "UNAUTHENTICATED")
            }
            Error::RoleRequired(_) => {
                status(Code::PermissionDenied, err.to_string(), "ROLE_REQUIRED")
            }
            Error::NotFound(message) => status(Code::NotFound, message.clone(), "NOT_FOUND"),
            Error::Unavailable(message) => {
                status(Code::Unavailable, message.clone(), "UNAVAILABLE")
            }
            Error::Internal(_) => internal(&err),
            Error::ExportTooLarge { .. } => {
                // A size limit: waiting does not help, so no RetryInfo.
                limit_exceeded(err.to_string(), None)
            }
            Error::ExportsBusy { .. } => {
                limit_exceeded(err.to_string(), Some(std::time::Duration::from_secs(2)))
            }
            Error::Storage(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => {
                tracing::warn!(error = %err, "reporting database unavailable");
                status(
                    Code::Unavailable,
                    "the reporting database is unavailable, retry later",
                    "UNAVAILABLE",
                )
            }
            Error::Storage(_) => internal(&err),
        }
    }
}
