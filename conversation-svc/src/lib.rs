//! conversation-svc: conversations, their messages and lifecycle, wrap-up, and the
//! conversation event log that reporting-svc follows.
//!
//! [`serve`] runs the service on a listener until its shutdown signal: migrations first,
//! then the command outbox dispatcher and the wrap-up time limit sweeper, then the gRPC
//! server with health and reflection.

pub mod agent_queues;
pub mod api;
pub mod directory;
pub mod domain;
pub mod error;
pub mod outbox;
pub mod routing;
pub mod store;
pub mod wrap_up;

mod config;

use std::sync::Arc;

use anyhow::Context as _;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_server::ConversationInternalServiceServer;
use switchboard_proto::conversation::v1::conversation_config_service_server::ConversationConfigServiceServer;
use switchboard_proto::conversation::v1::conversation_service_server::ConversationServiceServer;
use switchboard_proto::conversation::v1::supervisor_service_server::SupervisorServiceServer;
use switchboard_server_kit::idempotency;
use switchboard_server_kit::metrics::OutboxMetrics;
use switchboard_server_kit::{IdentityKey, Metrics, ServeOptions, ShutdownSignal, bind};
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use config::{Config, ENV_PREFIX};

/// The name the service logs and reports metrics under.
pub const NAME: &str = "conversation-svc";

/// The gRPC services this server reports in `grpc.health.v1`.
pub const HEALTH_SERVICES: &[&str] = &[
    "switchboard.conversation.v1.ConversationService",
    "switchboard.conversation.v1.SupervisorService",
    "switchboard.conversation.v1.ConversationConfigService",
    "switchboard.conversation.internal.v1.ConversationInternalService",
];

/// Runs conversation-svc on `listener` until `shutdown`, then drains and returns.
///
/// Refuses to start with an identity secret shorter than 16 bytes. Streams and the
/// outbox dispatcher end when `shutdown.token()` is cancelled.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: ShutdownSignal,
) -> anyhow::Result<()> {
    let key = IdentityKey::new(&config.identity_secret)
        .context("conversation-svc needs identity_secret (at least 16 bytes)")?;
    let store = store::Store::open(&config.database_url)
        .await
        .context("opening the conversation database")?;
    let routing = routing::Routing::new(&config.routing_url, key.clone(), config.routing_timeout())
        .with_context(|| format!("invalid routing_url {:?}", config.routing_url))?;
    let directory = directory::Directory::new(
        &config.directory_url,
        key.clone(),
        config.directory_timeout(),
        config.tenant_ancestry_ttl(),
    )
    .with_context(|| format!("invalid directory_url {:?}", config.directory_url))?;
    let stop = shutdown.token();
    // Created even when not served, so the outbox always has somewhere to record.
    let metrics = Metrics::new(NAME);
    let outbox_metrics = OutboxMetrics::register(metrics.registry(), &outbox::SERIES)
        .context("registering the outbox metrics")?;
    store.backlog().set_limit(config.outbox_max_pending);
    let outbox = outbox::Dispatcher::spawn(
        store.clone(),
        routing.clone(),
        outbox::RetryPolicy {
            initial: config.outbox_retry(),
            max: config.outbox_retry_max(),
            lease: config.outbox_lease(),
        },
        outbox_metrics,
        stop.clone(),
    );
    let wrap_up =
        wrap_up::Sweeper::spawn(store.clone(), outbox.clone(), wrap_up::POLL, stop.clone());
    // Both end with `stop`, like the outbox dispatcher.
    idempotency::spawn_purger(store.db().clone(), config.request_log.clone(), stop.clone());
    store
        .follow_changes(config.event_poll(), stop.clone())
        .await
        .context("reading the event log")?;
    let ctx = Arc::new(api::Context {
        agent_queues: agent_queues::AgentQueues::new(routing.clone(), config.agent_queues_fresh()),
        store,
        routing,
        directory,
        outbox,
        wrap_up,
        stop,
        heartbeat: config.heartbeat(),
    });

    let routes = Routes::new(ConversationServiceServer::new(api::ConversationApi::new(
        ctx.clone(),
    )))
    .add_service(SupervisorServiceServer::new(api::SupervisorApi::new(
        ctx.clone(),
    )))
    .add_service(ConversationConfigServiceServer::new(api::ConfigApi::new(
        ctx.clone(),
    )))
    .add_service(ConversationInternalServiceServer::new(
        api::InternalApi::new(ctx),
    ));

    let metrics = match config.metrics_listen {
        Some(addr) => {
            let listener = bind(addr)
                .await
                .with_context(|| format!("binding the metrics endpoint {addr}"))?;
            Some((metrics, listener))
        }
        None => None,
    };
    let mut options = ServeOptions::new(NAME);
    options.health_services = HEALTH_SERVICES.to_vec();
    options.descriptor_sets = vec![switchboard_proto::FILE_DESCRIPTOR_SET];
    options.identity = Some(key);
    options.metrics = metrics;
    switchboard_server_kit::serve(options, routes, listener, shutdown).await?;
    Ok(())
}
