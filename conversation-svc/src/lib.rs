//! conversation-svc
