//! routing-svc
