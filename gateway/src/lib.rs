//! The Switchboard gateway: the only entry point for clients.
//!
//! It routes the public gRPC API by path prefix to the owning service without decoding
//! bodies, authenticates every call (bearer token or API key), checks the method against
//! the caller's roles, and forwards a signed identity that the services trust. It also
//! serves `switchboard.directory.v1.DirectoryService` (tenants, users, API keys, settings)
//! from its own database, plus health and reflection of the public API.

pub mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod proxy;
pub mod store;

use anyhow::Context as _;
use std::time::Duration;
use switchboard_server_kit::idempotency;
use switchboard_server_kit::{Db, IdentityKey, Metrics, ServeOptions, ShutdownSignal, bind};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tracing::{info, warn};

pub use auth::jwt::mint_hs256_token;
pub use config::{
    AuthConfig, Config, ENV_PREFIX, KeyAlgorithm, OperatorKey, PublicKey, TlsConfig, Upstreams,
};
pub use error::GatewayError;
pub use store::Directory;

/// Services reported in `grpc.health.v1`: the public services the gateway fronts, and its
/// own DirectoryService and PlatformService.
pub const HEALTH_SERVICES: &[&str] = &[
    "switchboard.routing.v1.AgentService",
    "switchboard.routing.v1.QueueService",
    "switchboard.conversation.v1.ConversationService",
    "switchboard.conversation.v1.SupervisorService",
    "switchboard.conversation.v1.ConversationConfigService",
    "switchboard.reporting.v1.ReportingService",
    "switchboard.directory.v1.DirectoryService",
    "switchboard.directory.v1.PlatformService",
];

/// A fresh platform operator key (`sbo_…`); configure its [`operator_key_hash`].
pub fn generate_operator_key() -> String {
    domain::operator::generate()
}

/// The SHA-256 hash of an operator key, as `auth.operators` holds it.
pub fn operator_key_hash(key: &str) -> String {
    domain::operator::hash(key)
}

/// The secret of API key `id` with the random part `random` (32 to 128 letters and
/// digits), for [`Directory::ensure_api_key`].
pub fn api_key_secret(id: uuid::Uuid, random: &str) -> String {
    domain::api_key::format_secret(id, random)
}

/// Runs the gateway on `listener` until `shutdown`: opens and migrates the directory,
/// then serves the public API, health, reflection and metrics, and drains on shutdown
/// (health NOT_SERVING first, then open streams end, then in-flight calls finish).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: ShutdownSignal,
) -> anyhow::Result<()> {
    let identity_key = IdentityKey::new(&config.identity_secret)
        .context("identity_secret (SWITCHBOARD_GATEWAY_IDENTITY_SECRET) is required")?;
    if config.auth.hs256_secret.is_none() && config.auth.public_keys.is_empty() {
        warn!(
            "no bearer token keys configured (auth.hs256_secret, auth.public_keys): only API keys can authenticate"
        );
    }
    let db = Db::connect(&config.database_url)
        .await
        .context("opening the directory database")?;
    let directory = Directory::open(&db)
        .await
        .context("migrating the directory database")?;
    // Ends with the shutdown token, like the proxy's streams.
    idempotency::spawn_purger(db.clone(), config.request_log.clone(), shutdown.token());
    let authenticator = auth::Authenticator::new(&config.auth, directory.clone())?;
    // The directory's request fingerprints are keyed like every service's (serve does it
    // for services that verify identities; the gateway signs them instead).
    switchboard_server_kit::idempotency::use_identity_key(&identity_key);
    let gateway = proxy::GatewayService::new(proxy::GatewayParts {
        authenticator,
        identity_key,
        directory: api::DirectoryApi::new(directory.clone()),
        platform: api::PlatformApi::new(directory),
        upstreams: config.upstreams.clone(),
        default_deadline: (config.default_deadline_ms > 0)
            .then(|| Duration::from_millis(config.default_deadline_ms)),
        shutdown: shutdown.token(),
    })?;
    // Health and reflection are added as routes by server-kit; everything else falls
    // through to the gateway's own request path.
    let routes = Routes::from(axum::Router::new().fallback_service(gateway));

    let metrics = match config.metrics_listen {
        Some(addr) => {
            let listener = bind(addr)
                .await
                .with_context(|| format!("binding the metrics endpoint to {addr}"))?;
            Some((Metrics::new("gateway"), listener))
        }
        None => None,
    };
    info!(
        listen = %listener.local_addr()?,
        routing = %config.upstreams.routing_url,
        conversation = %config.upstreams.conversation_url,
        reporting = %config.upstreams.reporting_url,
        "gateway starting"
    );
    let options = ServeOptions {
        health_services: HEALTH_SERVICES.to_vec(),
        // google.rpc too, so that grpcurl can show the ErrorInfo and BadRequest details.
        descriptor_sets: vec![
            switchboard_proto::PUBLIC_FILE_DESCRIPTOR_SET,
            tonic_types::pb::FILE_DESCRIPTOR_SET,
        ],
        // The gateway verifies credentials itself; identities are what it signs.
        identity: None,
        metrics,
        tls: config.tls.as_ref().map(server_tls).transpose()?,
        ..ServeOptions::new("gateway")
    };
    switchboard_server_kit::serve(options, routes, listener, shutdown).await?;
    Ok(())
}

/// The server side of TLS from the configured certificate and key.
fn server_tls(tls: &config::TlsConfig) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let cert = config::read_pem("tls.cert", &tls.cert)?;
    let key = config::read_pem("tls.key", &tls.key)?;
    Ok(tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key)))
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn health_services_are_exactly_the_public_services() {
        let set =
            prost_types::FileDescriptorSet::decode(switchboard_proto::PUBLIC_FILE_DESCRIPTOR_SET)
                .unwrap();
        let mut public: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| {
                f.service
                    .iter()
                    .map(move |s| format!("{}.{}", f.package(), s.name()))
            })
            .collect();
        public.sort();
        let mut health: Vec<String> = HEALTH_SERVICES.iter().map(|s| (*s).to_owned()).collect();
        health.sort();
        assert_eq!(health, public);
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(config.metrics_listen.unwrap().to_string(), "127.0.0.1:9051");
        assert_eq!(config.default_deadline_ms, 30_000);
        assert_eq!(config.auth.leeway_seconds, 30);
        assert_eq!(config.upstreams.reporting_url, "http://127.0.0.1:50063");
    }
}
