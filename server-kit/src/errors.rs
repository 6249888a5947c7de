//! Rich gRPC statuses (`google.rpc.ErrorInfo`, `BadRequest`) built the same way everywhere.
//!
//! Clients branch on the `ErrorInfo` reason (UPPER_SNAKE_CASE, stable) rather than on the
//! message, which is for people.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every error Switchboard returns.
pub const ERROR_DOMAIN: &str = "switchboard.dev";

/// A status with `code`, `message` and an `ErrorInfo` carrying `reason`.
pub fn status(code: Code, message: impl Into<String>, reason: &str) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new()),
    )
}

/// RESOURCE_EXHAUSTED with reason `LIMIT_EXCEEDED`. With `retry_after` (a limit that passes
/// with time: a rate limit, capacity that frees up) the status also carries a
/// `google.rpc.RetryInfo`; a size limit passes `None`, since only a narrower request helps.
pub fn limit_exceeded(message: impl Into<String>, retry_after: Option<Duration>) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info("LIMIT_EXCEEDED", ERROR_DOMAIN, HashMap::new());
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// INVALID_ARGUMENT for one bad request field, with reason `INVALID_ARGUMENT` and a
/// `BadRequest` field violation; the message reads `"{field}: {description}"`.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    let mut details = ErrorDetails::new();
    details
        .set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, HashMap::new())
        .add_bad_request_violation(field, description.clone());
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        details,
    )
}

/// Parses the UUID in request field `field`: `"{field}: is required"` when empty,
/// `"{field}: must be a UUID"` when malformed.
pub fn parse_uuid(field: &str, value: &str) -> Result<uuid::Uuid, Status> {
    if value.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    uuid::Uuid::parse_str(value).map_err(|_| invalid_field(field, "must be a UUID"))
}

/// Parses the mandatory `request_id` that makes a mutation idempotent (AIP-155).
pub fn require_request_id(value: &str) -> Result<uuid::Uuid, Status> {
    parse_uuid("request_id", value)
}

/// Logs `err` in full and returns a bare INTERNAL "internal error", so that no internal
/// detail (SQL, paths, peer addresses) reaches a client.
pub fn internal(err: impl std::fmt::Display) -> Status {
    tracing::error!(error = %err, "internal error");
    Status::internal("internal error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_error_info() {
        let st = status(
            Code::FailedPrecondition,
            "conversation is closed",
            "CONVERSATION_CLOSED",
        );
        assert_eq!(st.code(), Code::FailedPrecondition);
        assert_eq!(st.message(), "conversation is closed");
        let info = st.get_details_error_info().unwrap();
        assert_eq!(info.reason, "CONVERSATION_CLOSED");
        assert_eq!(info.domain, ERROR_DOMAIN);
    }

    #[test]
    fn limits_say_when_to_retry_only_when_waiting_helps() {
        let st = limit_exceeded("agent is full", Some(Duration::from_secs(2)));
        assert_eq!(st.code(), Code::ResourceExhausted);
        assert_eq!(
            st.get_details_error_info().unwrap().reason,
            "LIMIT_EXCEEDED"
        );
        assert_eq!(
            st.get_details_retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(2))
        );
        let st = limit_exceeded("export over 1,000,000 rows", None);
        assert_eq!(
            st.get_details_error_info().unwrap().reason,
            "LIMIT_EXCEEDED"
        );
        assert!(st.get_details_retry_info().is_none());
    }

    #[test]
    fn invalid_field_has_violation_and_reason() {
        let st = invalid_field("queue_id", "must not be empty");
        assert_eq!(st.code(), Code::InvalidArgument);
        assert_eq!(st.message(), "queue_id: must not be empty");
        assert_eq!(
            st.get_details_error_info().unwrap().reason,
            "INVALID_ARGUMENT"
        );
        let bad = st.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "queue_id");
        assert_eq!(bad.field_violations[0].description, "must not be empty");
    }

    #[test]
    fn parse_uuid_cases() {
        let id = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
        assert_eq!(parse_uuid("agent_id", id).unwrap().to_string(), id);
        let empty = parse_uuid("agent_id", "").unwrap_err();
        assert_eq!(empty.message(), "agent_id: is required");
        let bad = parse_uuid("agent_id", "nope").unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert_eq!(bad.message(), "agent_id: must be a UUID");
        assert_eq!(
            require_request_id("").unwrap_err().message(),
            "request_id: is required"
        );
    }

    #[test]
    fn internal_hides_details() {
        let st = internal("connection to 10.0.0.7:5432 refused");
        assert_eq!(st.code(), Code::Internal);
        assert_eq!(st.message(), "internal error");
        assert!(st.details().is_empty());
    }
}
