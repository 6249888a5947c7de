//! The Switchboard gateway: the only entry point for clients.
//!
//! It routes the public gRPC API by path prefix to the owning service without decoding
//! bodies, authenticates every call (bearer token or API key), checks the method against
//! the caller's roles, and forwards a signed identity that the services trust. It also
//! serves `switchboard.directory.v1.DirectoryService` (tenants, users, API keys, settings)
//! from its own database, plus health and reflection of the public API. A second,
//! internal listener serves `switchboard.directory.internal.v1` to the other services only.

pub mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod proxy;
pub mod store;

use anyhow::Context as _;
use std::time::Duration;
use switchboard_proto::directory::internal::v1::directory_internal_service_server::DirectoryInternalServiceServer;
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

/// The internal service served on the internal listener, and only there.
pub const INTERNAL_SERVICE: &str = "switchboard.directory.internal.v1.DirectoryInternalService";

/// The gateway's two listeners, bound before [`serve`] so that tests and the dev stack
/// know both ports before anything runs.
#[derive(Debug)]
pub struct Listeners {
    /// Where clients connect: the public API, its health and reflection.
    pub public: TcpListener,
    /// Where other services connect: `switchboard.directory.internal.v1` only, signed
    /// service identities only.
    pub internal: TcpListener,
}

impl Listeners {
    /// Binds `config.listen` and `config.internal_listen`.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let public = bind(config.listen)
            .await
            .with_context(|| format!("binding the gateway to {}", config.listen))?;
        let internal = bind(config.internal_listen).await.with_context(|| {
            format!(
                "binding the gateway's internal listener to {}",
                config.internal_listen
            )
        })?;
        Ok(Listeners { public, internal })
    }
}

/// The secret of API key `id` with the random part `random` (32 to 128 letters and
/// digits), for [`Directory::ensure_api_key`].
pub fn api_key_secret(id: uuid::Uuid, random: &str) -> String {
    domain::api_key::format_secret(id, random)
}

/// Runs the gateway on `listeners` until `shutdown`: opens and migrates the directory,
/// then serves the public API, health, reflection and metrics on the public listener and
/// the internal directory API on the internal one, and drains both on shutdown (health
/// NOT_SERVING first, then open streams end, then in-flight calls finish). Either listener
/// failing stops the other.
pub async fn serve(
    config: Config,
    listeners: Listeners,
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
        .context("migrating the directory database")?
        .with_cache(config.auth.cache_ttl(), config.auth.cache_capacity);
    // Ends with the shutdown token, like the proxy's streams.
    idempotency::spawn_purger(db.clone(), config.request_log.clone(), shutdown.token());
    let authenticator = auth::Authenticator::new(&config.auth, directory.clone())?;
    // The directory's request fingerprints are keyed like every service's (serve does it
    // for services that verify identities; the gateway signs them instead).
    switchboard_server_kit::idempotency::use_identity_key(&identity_key);
    let gateway = proxy::GatewayService::new(proxy::GatewayParts {
        authenticator,
        identity_key: identity_key.clone(),
        directory: api::DirectoryApi::new(directory.clone()),
        platform: api::PlatformApi::new(directory.clone()),
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
        listen = %listeners.public.local_addr()?,
        internal_listen = %listeners.internal.local_addr()?,
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
    // Separate from the public listener, so that no client can reach the internal API
    // however a path is spelled, and so that a NetworkPolicy can admit only routing-svc.
    let internal_routes = Routes::new(DirectoryInternalServiceServer::new(
        api::DirectoryInternalApi::new(directory),
    ));
    let internal_options = ServeOptions {
        health_services: vec![INTERNAL_SERVICE],
        // Services call it with a signed service identity, checked before any handler.
        identity: Some(identity_key),
        ..ServeOptions::new("gateway-internal")
    };
    let public = until_first_failure(
        switchboard_server_kit::serve(options, routes, listeners.public, shutdown.clone()),
        &shutdown,
    );
    let internal = until_first_failure(
        switchboard_server_kit::serve(
            internal_options,
            internal_routes,
            listeners.internal,
            shutdown.clone(),
        ),
        &shutdown,
    );
    let (public, internal) = tokio::join!(public, internal);
    public.context("public listener")?;
    internal.context("internal listener")?;
    Ok(())
}

/// Runs one server; if it fails, asks the other to stop too, so that the gateway never
/// keeps serving half of what it should.
async fn until_first_failure(
    server: impl Future<Output = Result<(), switchboard_server_kit::ServeError>>,
    shutdown: &ShutdownSignal,
) -> Result<(), switchboard_server_kit::ServeError> {
    let result = server.await;
    if result.is_err() {
        shutdown.trigger();
    }
    result
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
        assert_eq!(config.internal_listen.to_string(), "127.0.0.1:50055");
        assert_eq!(config.metrics_listen.unwrap().to_string(), "127.0.0.1:9051");
        assert_eq!(config.default_deadline_ms, 30_000);
        assert_eq!(config.auth.leeway_seconds, 30);
        assert_eq!(config.auth.cache_ttl_ms, 5_000);
        assert_eq!(config.auth.cache_capacity, 100_000);
        assert_eq!(config.upstreams.reporting_url, "http://127.0.0.1:50063");
    }
}
