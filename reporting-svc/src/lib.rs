//! reporting-svc
