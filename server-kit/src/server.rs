//! Assembling and running a service's gRPC server.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tower::util::option_layer;

use crate::health::UntilShutdown;
use crate::identity::{IdentityKey, IdentityLayer};
use crate::malformed::MalformedRequestLayer;
use crate::metrics::{Metrics, MetricsLayer, serve_metrics};

const METRICS_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// What a service hands to [`serve`] besides its routes.
pub struct ServeOptions {
    /// The service's name, e.g. `"routing-svc"`, for logs.
    pub name: &'static str,
    /// Full gRPC service names to report in `grpc.health.v1` (e.g.
    /// `"switchboard.routing.v1.AgentService"`); all of them and `""` start SERVING.
    pub health_services: Vec<&'static str>,
    /// Encoded `FileDescriptorSet`s that reflection serves.
    pub descriptor_sets: Vec<&'static [u8]>,
    /// When set, every call except health and reflection must carry a valid gateway
    /// identity signed with this key.
    pub identity: Option<IdentityKey>,
    /// When set, calls are recorded and `GET /metrics` is served on this listener.
    pub metrics: Option<(Metrics, TcpListener)>,
    /// How long in-flight calls may take to finish after shutdown begins.
    pub drain_timeout: Duration,
    /// When set, clients connect over TLS (HTTP/2 negotiated by ALPN).
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

impl ServeOptions {
    /// Options with nothing registered, no identity check, no metrics and a 10 s drain.
    pub fn new(name: &'static str) -> ServeOptions {
        ServeOptions {
            name,
            health_services: Vec::new(),
            descriptor_sets: Vec::new(),
            identity: None,
            metrics: None,
            drain_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// Why a server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A descriptor set given for reflection is not valid.
    #[error("cannot build reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The listener handed to [`serve`] is unusable.
    #[error("grpc listener unusable: {0}")]
    Listener(#[source] std::io::Error),
    /// The metrics endpoint failed.
    #[error("metrics server failed: {0}")]
    Metrics(#[source] std::io::Error),
}

/// Asks a server and its background work to stop; cheap to clone and share.
///
/// Two stages: [`trigger`](Self::trigger) requests the shutdown, and [`serve`] then
/// reports NOT_SERVING before it cancels [`token`](Self::token), which ends streams and
/// background tasks.
#[derive(Clone, Debug, Default)]
pub struct ShutdownSignal {
    requested: CancellationToken,
    token: CancellationToken,
}

impl ShutdownSignal {
    /// A signal that fires only when triggered.
    pub fn new() -> ShutdownSignal {
        ShutdownSignal::default()
    }

    /// A signal triggered when `fut` resolves, e.g. `shutdown::signal()`; needs a tokio
    /// runtime.
    pub fn from_future(fut: impl Future<Output = ()> + Send + 'static) -> ShutdownSignal {
        let signal = ShutdownSignal::new();
        let trigger = signal.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = fut => trigger.trigger(),
                () = trigger.requested.cancelled() => {}
            }
        });
        signal
    }

    /// The token that long-running server streams and background tasks watch; [`serve`]
    /// cancels it once health reports NOT_SERVING, and on any exit.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Requests the shutdown.
    pub fn trigger(&self) {
        self.requested.cancel();
    }

    /// Resolves once the shutdown has been requested.
    pub async fn wait(&self) {
        self.requested.cancelled().await;
    }

    /// Whether the shutdown has been requested.
    pub fn is_triggered(&self) -> bool {
        self.requested.is_cancelled()
    }
}

/// Binds a TCP listener, so that callers (tests, the dev stack) can learn the port before
/// the server runs.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `routes` plus health and reflection on `listener` until `shutdown`, then drains.
///
/// On shutdown: every health status turns NOT_SERVING, then `shutdown.token()` is
/// cancelled so that server streams end, then the server stops accepting and waits up to
/// `drain_timeout` for in-flight calls, and returns `Ok`.
pub async fn serve(
    options: ServeOptions,
    routes: Routes,
    listener: TcpListener,
    shutdown: ShutdownSignal,
) -> Result<(), ServeError> {
    // Whatever happens, background work tied to this server stops with it.
    let _cancel_on_exit = shutdown.token.clone().drop_guard();
    if let Some(key) = &options.identity {
        crate::idempotency::use_identity_key(key);
    }
    let name = options.name;

    let (health, health_service) = tonic_health::server::health_reporter();
    let mut health_names = vec![""];
    health_names.extend(options.health_services.iter().copied());
    for service in &health_names {
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }

    let reflection = || {
        options.descriptor_sets.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        )
    };
    let routes = routes
        .add_service(UntilShutdown::new(health_service, shutdown.token.clone()))
        .add_service(reflection().build_v1()?)
        // grpcurl 1.8 and other older tools speak only v1alpha.
        .add_service(reflection().build_v1alpha()?);

    let metrics_stop = CancellationToken::new();
    let (metrics_layer, metrics_task) = match options.metrics {
        Some((metrics, metrics_listener)) => {
            let layer = metrics.layer();
            let task = tokio::spawn(serve_metrics(
                metrics,
                metrics_listener,
                metrics_stop.clone().cancelled_owned(),
            ));
            (layer, Some(task))
        }
        None => (MetricsLayer::disabled(), None),
    };

    let local_addr = listener.local_addr().map_err(ServeError::Listener)?;
    let stop_accepting = CancellationToken::new();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = options.tls {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        // Detects dead peers on long-lived streams.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        // Clients may send large header lists so that an oversized one gets a proper
        // RESOURCE_EXHAUSTED from MalformedRequestLayer instead of a transport error.
        .http2_max_header_list_size(crate::malformed::ADVERTISED_HEADER_LIST_BYTES)
        // Metrics first: it sees every call, including those refused below.
        .layer(metrics_layer)
        // Identity next: no service code runs for a call without a valid gateway signature.
        .layer(option_layer(options.identity.map(IdentityLayer::new)))
        // Innermost: refusals tonic makes before any handler (undecodable or oversized
        // requests) get the contract's codes, and metrics count them as such.
        .layer(MalformedRequestLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stop_accepting.clone().cancelled_owned());
    let mut server = std::pin::pin!(server);

    tracing::info!(service = name, addr = %local_addr, "serving");
    let result = tokio::select! {
        result = &mut server => result.map_err(ServeError::from),
        () = shutdown.wait() => {
            tracing::info!(service = name, "shutting down");
            for service in &health_names {
                health.set_service_status(service, ServingStatus::NotServing).await;
            }
            shutdown.token.cancel();
            stop_accepting.cancel();
            match tokio::time::timeout(options.drain_timeout, &mut server).await {
                Ok(result) => result.map_err(ServeError::from),
                Err(_) => {
                    tracing::warn!(
                        service = name,
                        timeout = ?options.drain_timeout,
                        "calls still running after the drain timeout, stopping anyway"
                    );
                    Ok(())
                }
            }
        }
    };

    metrics_stop.cancel();
    if let Some(mut task) = metrics_task {
        // A scraper holding its connection open must not keep the process alive.
        match tokio::time::timeout(METRICS_STOP_TIMEOUT, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => return result.and(Err(ServeError::Metrics(err))),
            Ok(Err(err)) => {
                return result.and(Err(ServeError::Metrics(std::io::Error::other(err))));
            }
            Err(_) => task.abort(),
        }
    }
    tracing::info!(service = name, "stopped");
    result
}
