//! routing-svc: programs, queues, agents' presence and capacity, and offers of waiting
//! conversations to agents.
//!
//! [`serve`] runs the gRPC services (`AgentService`, `QueueService`,
//! `RoutingInternalService`) with health and reflection, the matcher that makes and
//! expires offers, and the dispatcher that applies accepted assignments in
//! conversation-svc.

pub mod api;
pub mod config;
pub mod convert;
pub mod directory;
pub mod domain;
pub mod engine;
pub mod error;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use switchboard_proto::routing::internal::v1::routing_internal_service_server::RoutingInternalServiceServer;
use switchboard_proto::routing::v1::agent_service_server::AgentServiceServer;
use switchboard_proto::routing::v1::queue_service_server::QueueServiceServer;
use switchboard_server_kit::idempotency;
use switchboard_server_kit::identity::{Identity, IdentityKey, signed_channel};
use switchboard_server_kit::metrics::Metrics;
use switchboard_server_kit::server::{ServeOptions, ShutdownSignal, bind};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::service::Routes;

pub use config::{Config, ENV_PREFIX};

use crate::api::agent::AgentApi;
use crate::api::internal::InternalApi;
use crate::api::queue::QueueApi;
use crate::config::Timings;
use crate::directory::Directory;
use crate::engine::Context;
use crate::engine::dispatcher::{self, Dispatcher};
use crate::store::Store;
use switchboard_server_kit::metrics::OutboxMetrics;

/// The service's name in logs, metrics and calls to other services.
pub const SERVICE_NAME: &str = "routing-svc";

/// The gRPC services routing-svc reports in `grpc.health.v1`.
pub const HEALTH_SERVICES: &[&str] = &[
    "switchboard.routing.v1.AgentService",
    "switchboard.routing.v1.QueueService",
    "switchboard.routing.internal.v1.RoutingInternalService",
];

/// Runs routing-svc on `listener` until `shutdown`: applies migrations, starts the matcher
/// and the assignment dispatcher, then serves the gRPC API (plus metrics when
/// `config.metrics_listen` is set). Refuses to start with an identity secret shorter than
/// 16 bytes.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: ShutdownSignal,
) -> anyhow::Result<()> {
    let key = IdentityKey::new(&config.identity_secret).map_err(|_| {
        anyhow::anyhow!(
            "identity_secret must be at least 16 bytes (set {ENV_PREFIX}IDENTITY_SECRET to the \
             secret shared with the gateway and the other services)"
        )
    })?;
    let store = Store::open(&config.database_url)
        .await
        .with_context(|| "cannot open the routing database")?;
    let conversation = signed_channel(
        &config.conversation_url,
        key.clone(),
        Identity::service(SERVICE_NAME),
    )
    .with_context(|| format!("invalid conversation_url {}", config.conversation_url))?;
    let directory = Directory::new(
        &config.directory_url,
        key.clone(),
        SERVICE_NAME,
        Duration::from_millis(config.directory_timeout_ms.max(1)),
    )
    .with_context(|| format!("invalid directory_url {}", config.directory_url))?;
    // Created even when not served, so the outbox always has somewhere to record.
    let registry = Metrics::new(SERVICE_NAME);
    let outbox_metrics = OutboxMetrics::register(registry.registry(), &dispatcher::SERIES)
        .context("cannot register the outbox metrics")?;
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let listener = bind(addr)
                .await
                .with_context(|| format!("cannot bind metrics address {addr}"))?;
            Some((registry, listener))
        }
        None => None,
    };

    let timings = Timings::from_config(&config);
    let matcher = Arc::new(Notify::new());
    let dispatcher = Arc::new(Dispatcher::new(
        store.clone(),
        conversation,
        &config,
        matcher.clone(),
        outbox_metrics,
    ));
    let context = Context {
        store: store.clone(),
        matcher,
        expiry: Arc::new(Notify::new()),
        dispatcher: dispatcher.clone(),
        directory,
        timings,
        shutdown: shutdown.token(),
    };
    let matcher_task = tokio::spawn(engine::matcher::run(context.clone(), shutdown.token()));
    let expiry_task = tokio::spawn(engine::expiry::run(context.clone(), shutdown.token()));
    let dispatcher_token = shutdown.token();
    let dispatcher_task = tokio::spawn(async move { dispatcher.run(dispatcher_token).await });
    let follower_task = store
        .follow_changes(timings.event_poll_interval, shutdown.token())
        .await?;
    let purger_task = idempotency::spawn_purger(
        store.db().clone(),
        config.request_log.clone(),
        shutdown.token(),
    );

    let routes = Routes::new(AgentServiceServer::new(AgentApi::new(context.clone())))
        .add_service(QueueServiceServer::new(QueueApi::new(context.clone())))
        .add_service(RoutingInternalServiceServer::new(InternalApi::new(context)));
    let mut options = ServeOptions::new(SERVICE_NAME);
    options.health_services = HEALTH_SERVICES.to_vec();
    options.descriptor_sets = vec![switchboard_proto::FILE_DESCRIPTOR_SET];
    options.identity = Some(key);
    options.metrics = metrics;

    let served =
        switchboard_server_kit::server::serve(options, routes, listener, shutdown.clone()).await;
    // serve cancels the token on every exit; wait for the background work to stop.
    shutdown.token().cancel();
    let _ = matcher_task.await;
    let _ = expiry_task.await;
    let _ = follower_task.await;
    let _ = dispatcher_task.await;
    let _ = purger_task.await;
    store.close().await;
    served.map_err(anyhow::Error::from)
}
