//! Server plumbing shared by every Switchboard service.
//!
//! Each service is a library with `serve(config, listener, shutdown)` and a thin `main`;
//! everything here is the part that is not domain logic: layered configuration, logging,
//! signals, the gateway-signed caller identity, error statuses, storage over SQLite or
//! PostgreSQL, Prometheus metrics, and assembling a tonic server with health, reflection
//! and graceful shutdown.

pub mod changes;
pub mod config;
pub mod db;
pub mod errors;
pub mod fields;
mod health;
pub mod idempotency;
pub mod identity;
pub mod malformed;
pub mod masking;
pub mod metrics;
pub mod page;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod testing;

pub use config::{CommonArgs, ConfigError, LogConfig, LogFormat};
pub use db::{Db, Dialect};
pub use errors::{
    ERROR_DOMAIN, internal, invalid_field, limit_exceeded, parse_uuid, require_request_id, status,
};
pub use identity::{
    IDENTITY_HEADERS, Identity, IdentityKey, IdentityKeyError, IdentityLayer, PrincipalKind, Role,
    SignedChannel, SigningLayer, SigningService, identity_of, signed_channel,
};
pub use masking::mask_pans;
pub use metrics::{Metrics, MetricsLayer, serve_metrics};
pub use server::{ServeError, ServeOptions, ShutdownSignal, bind, serve};
pub use telemetry::init_tracing;
