//! reporting-svc: follows conversation-svc's and routing-svc's event logs into facts and
//! counts, and serves
//! `switchboard.reporting.v1.ReportingService` (reports by API and as CSV) from them.
//!
//! Layout: `domain` (pure rules: facts, counted occurrences, periods, statistics, CSV),
//! `store` (facts, rollups with their points and the consumer cursors in SQLite or PostgreSQL),
//! `consumer` (the event-log subscriptions), `directory` (teams and the tenant tree, asked
//! of the gateway), `api` (the gRPC service).

pub mod api;
pub mod config;
pub mod consumer;
pub mod directory;
pub mod domain;
pub mod error;
pub mod store;

use anyhow::Context as _;
use switchboard_proto::reporting::v1::reporting_service_server::ReportingServiceServer;
use switchboard_server_kit::{
    Identity, IdentityKey, Metrics, ServeOptions, ShutdownSignal, bind, signed_channel,
};
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use config::{Config, ENV_PREFIX};

use crate::api::ReportingApi;
use crate::consumer::{Backoff, Consumer, ConsumerMetrics};
use crate::directory::Directory;
use crate::store::Store;

/// The service's name, in logs, metrics and the identity it signs its calls with.
pub const SERVICE_NAME: &str = "reporting-svc";

/// gRPC services reported by `grpc.health.v1.Health`.
pub const HEALTH_SERVICES: &[&str] = &["switchboard.reporting.v1.ReportingService"];

/// Runs reporting-svc on `listener` until `shutdown`: migrates the database, starts the
/// event consumers, then serves ReportingService with health, reflection and metrics.
///
/// Refuses to start when `identity_secret` is shorter than 16 bytes.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: ShutdownSignal,
) -> anyhow::Result<()> {
    let key = IdentityKey::new(&config.identity_secret).context(
        "identity_secret must be at least 16 bytes (set SWITCHBOARD_REPORTING_IDENTITY_SECRET)",
    )?;
    let store = Store::open(&config.database_url)
        .await
        .context("cannot open the reporting database")?;
    let channel = signed_channel(
        &config.conversation_url,
        key.clone(),
        Identity::service(SERVICE_NAME),
    )
    .with_context(|| format!("invalid conversation_url `{}`", config.conversation_url))?;
    let routing_channel = signed_channel(
        &config.routing_url,
        key.clone(),
        Identity::service(SERVICE_NAME),
    )
    .with_context(|| format!("invalid routing_url `{}`", config.routing_url))?;
    let directory = Directory::new(
        &config.directory_url,
        key.clone(),
        SERVICE_NAME,
        config.directory_timeout(),
    )
    .with_context(|| format!("invalid directory_url `{}`", config.directory_url))?;

    let metrics = Metrics::new(SERVICE_NAME);
    let consumer_metrics =
        ConsumerMetrics::register(metrics.registry()).context("cannot register metrics")?;
    let metrics = match config.metrics_listen {
        Some(addr) => Some((
            metrics,
            bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?,
        )),
        None => None,
    };

    let (initial, max) = config.reconnect_backoff();
    let backoff = Backoff::new(initial, max);
    let conversations = tokio::spawn(
        Consumer::conversation(store.clone(), channel, backoff, Some(&consumer_metrics))
            .run(shutdown.token()),
    );
    let routing = tokio::spawn(
        Consumer::routing(
            store.clone(),
            routing_channel,
            backoff,
            Some(&consumer_metrics),
        )
        .run(shutdown.token()),
    );

    let api = ReportingApi::new(store, directory, config.export_limit());
    let routes = Routes::new(ReportingServiceServer::new(api));
    let mut options = ServeOptions::new(SERVICE_NAME);
    options.health_services = HEALTH_SERVICES.to_vec();
    options.descriptor_sets = vec![switchboard_proto::FILE_DESCRIPTOR_SET];
    options.identity = Some(key);
    options.metrics = metrics;

    // `serve` cancels the shutdown token whenever it returns, which stops the consumers.
    let served = switchboard_server_kit::serve(options, routes, listener, shutdown).await;
    for consumer in [conversations, routing] {
        if let Err(err) = consumer.await {
            tracing::error!(error = %err, "event consumer task failed");
        }
    }
    served.context("reporting-svc server failed")
}
