//! The gateway's errors and their one mapping to gRPC statuses.

use switchboard_server_kit::Role;
use switchboard_server_kit::errors::{internal, status};
use tonic::{Code, Status};

use crate::domain::authz::Denial;
use crate::domain::directory::FieldError;

/// Everything that can go wrong in the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A request field breaks a rule.
    #[error("{}: {}", .0.field, .0.description)]
    InvalidField(FieldError),
    /// No such object in the caller's tenant.
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for, e.g. `user`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A unique value is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    WrongState(String),
    /// No or bad credentials. The text is the precise cause, for the server log only: the
    /// client gets [`UNAUTHENTICATED_MESSAGE`], whatever part failed.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not call the method.
    #[error("permission denied: {0:?}")]
    Denied(Denial),
    /// The path names no public service.
    #[error("unknown service {0}")]
    UnknownService(String),
    /// The RPC is part of the contract but its behaviour comes with a later release.
    #[error("{0} is part of the API contract but not served yet")]
    NotImplemented(&'static str),
    /// A service behind the gateway cannot be reached, or the gateway is stopping.
    #[error("{0}")]
    Unavailable(String),
    /// The call's deadline passed.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A stored row does not have the expected shape.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<FieldError> for GatewayError {
    fn from(err: FieldError) -> Self {
        GatewayError::InvalidField(err)
    }
}

impl From<FieldError> for Status {
    fn from(err: FieldError) -> Self {
        GatewayError::InvalidField(err).into_status()
    }
}

impl From<GatewayError> for Status {
    fn from(err: GatewayError) -> Self {
        err.into_status()
    }
}

/// What every refused credential gets told: naming the part that failed (signature, expiry,
/// unknown or revoked key) would help someone probing stolen or forged credentials.
pub const UNAUTHENTICATED_MESSAGE: &str =
    "missing or invalid credentials: send `authorization: Bearer <token>` or `x-api-key: <key>`";

fn role_list(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| format!("{role:?}").to_uppercase())
        .collect::<Vec<_>>()
        .join(" or ")
}

impl GatewayError {
    /// The status a client receives; internal failures are logged and masked.
    pub fn into_status(self) -> Status {
        match self {
            GatewayError::InvalidField(err) => {
                switchboard_server_kit::invalid_field(&err.field, err.description)
            }
            GatewayError::NotFound { kind, id } => status(
                Code::NotFound,
                format!("{kind} {id} not found"),
                "NOT_FOUND",
            ),
            GatewayError::AlreadyExists(message) => {
                status(Code::AlreadyExists, message, "ALREADY_EXISTS")
            }
            GatewayError::Unauthenticated(_) => status(
                Code::Unauthenticated,
                UNAUTHENTICATED_MESSAGE,
                "UNAUTHENTICATED",
            ),
            GatewayError::WrongState(message) => {
                status(Code::FailedPrecondition, message, "WRONG_STATE")
            }
            GatewayError::Denied(Denial::RoleRequired { method, roles }) => status(
                Code::PermissionDenied,
                format!("{method} needs the role {}", role_list(roles)),
                "ROLE_REQUIRED",
            ),
            GatewayError::Denied(Denial::ActionDisabled { action }) => status(
                Code::PermissionDenied,
                format!("the supervisor action `{action}` is not enabled for this tenant"),
                "ACTION_DISABLED",
            ),
            GatewayError::Denied(Denial::OperatorRequired { method }) => status(
                Code::PermissionDenied,
                format!("{method} is for platform operators"),
                "ROLE_REQUIRED",
            ),
            GatewayError::Denied(Denial::NotForOperators { method }) => status(
                Code::PermissionDenied,
                format!("platform operators may call only PlatformService, not {method}"),
                "ROLE_REQUIRED",
            ),
            GatewayError::UnknownService(path) => {
                Status::unimplemented(format!("unknown service: {path}"))
            }
            err @ GatewayError::NotImplemented(_) => {
                status(Code::Unimplemented, err.to_string(), "NOT_IMPLEMENTED")
            }
            GatewayError::Unavailable(message) => status(Code::Unavailable, message, "UNAVAILABLE"),
            GatewayError::DeadlineExceeded => Status::deadline_exceeded("deadline exceeded"),
            err @ (GatewayError::Config(_)
            | GatewayError::Corrupt(_)
            | GatewayError::Database(_)
            | GatewayError::Migrate(_)) => internal(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt as _;

    use super::*;

    fn reason(status: &Status) -> String {
        status
            .get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default()
    }

    #[test]
    fn codes_and_reasons() {
        let st = GatewayError::Denied(Denial::ActionDisabled { action: "monitor" }).into_status();
        assert_eq!(st.code(), Code::PermissionDenied);
        assert_eq!(reason(&st), "ACTION_DISABLED");
        let st = GatewayError::Denied(Denial::RoleRequired {
            method: "/a.B/C".to_owned(),
            roles: &[Role::Agent, Role::Supervisor],
        })
        .into_status();
        assert_eq!(st.message(), "/a.B/C needs the role AGENT or SUPERVISOR");
        assert_eq!(reason(&st), "ROLE_REQUIRED");
        let st = GatewayError::NotFound {
            kind: "user",
            id: "u1".to_owned(),
        }
        .into_status();
        assert_eq!(
            (st.code(), st.message()),
            (Code::NotFound, "user u1 not found")
        );
        let st = GatewayError::Unauthenticated("bearer token expired".to_owned()).into_status();
        assert_eq!(reason(&st), "UNAUTHENTICATED");
        assert_eq!(
            st.message(),
            UNAUTHENTICATED_MESSAGE,
            "the cause stays in the log"
        );
        let st = GatewayError::Database(sqlx::Error::PoolTimedOut).into_status();
        assert_eq!(
            (st.code(), st.message()),
            (Code::Internal, "internal error")
        );
        let st = GatewayError::UnknownService("/x.Y/Z".to_owned()).into_status();
        assert_eq!(st.code(), Code::Unimplemented);
        let st = GatewayError::NotImplemented("DirectoryService.Later").into_status();
        assert_eq!(st.code(), Code::Unimplemented);
        assert!(st.message().contains("Later"));
    }
}
