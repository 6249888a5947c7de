//! Starts the four services in one process, each on its own loopback listener and talking
//! gRPC to the others exactly as in production. Used by `switchboard dev` and by the
//! end-to-end tests, so both exercise the same wiring.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::Connection;
use switchboard_server_kit::server::{ShutdownSignal, bind};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Where the services keep their data.
#[derive(Clone, Debug)]
pub enum Storage {
    /// One SQLite file per service in this directory (created if missing).
    Directory(PathBuf),
    /// SQLite in memory: nothing is kept after the process ends.
    InMemory,
    /// One PostgreSQL database per service, named `<prefix>_<service>`, created on this
    /// server if missing. `server_url` names a database the user may create databases from.
    Postgres { server_url: String, prefix: String },
}

impl Storage {
    async fn url_for(&self, service: &str) -> anyhow::Result<String> {
        match self {
            Storage::Directory(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating data directory {}", dir.display()))?;
                Ok(format!("sqlite://{}/{service}.db", dir.display()))
            }
            // Labelled, so that the dev stack's seeding reaches the gateway's own database.
            Storage::InMemory => Ok(format!(
                "sqlite::memory:{}-{service}",
                uuid::Uuid::new_v4().simple()
            )),
            Storage::Postgres { server_url, prefix } => {
                let name = format!("{prefix}_{service}");
                let mut conn = sqlx::PgConnection::connect(server_url)
                    .await
                    .with_context(|| format!("connecting to {server_url}"))?;
                let exists: Option<(i32,)> =
                    sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
                        .bind(&name)
                        .fetch_optional(&mut conn)
                        .await?;
                if exists.is_none() {
                    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                        .execute(&mut conn)
                        .await?;
                }
                conn.close().await?;
                let base = server_url
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .unwrap_or(server_url);
                Ok(format!("{base}/{name}"))
            }
        }
    }
}

/// How to run the suite.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Where data lives.
    pub storage: Storage,
    /// The gateway's address; port 0 picks a free one.
    pub gateway_listen: SocketAddr,
    /// Secret with which the gateway signs caller identities for the services.
    pub identity_secret: String,
    /// HS256 secret for bearer tokens (development only).
    pub jwt_secret: String,
    /// Platform operator keys by name (`sbo_…`); the gateway is given only their hashes.
    pub operators: Vec<(String, String)>,
    /// Whether each service serves Prometheus metrics on a free loopback port.
    pub metrics: bool,
}

/// Addresses of a running suite.
#[derive(Clone, Debug)]
pub struct Addresses {
    /// The gateway: the only address clients use.
    pub gateway: SocketAddr,
    /// The gateway's internal listener (the directory's internal API, for routing-svc and
    /// conversation-svc).
    pub gateway_internal: SocketAddr,
    /// routing-svc's gRPC address.
    pub routing: SocketAddr,
    /// conversation-svc's gRPC address.
    pub conversation: SocketAddr,
    /// reporting-svc's gRPC address.
    pub reporting: SocketAddr,
    /// Metrics addresses by service name, when metrics are on.
    pub metrics: Vec<(&'static str, SocketAddr)>,
}

/// The four services running in this process.
pub struct RunningSuite {
    /// Where each service listens.
    pub addresses: Addresses,
    /// Database URL of each service, by service name.
    pub database_urls: Vec<(&'static str, String)>,
    shutdown: ShutdownSignal,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

/// Starts the suite and waits until every service reports SERVING.
pub async fn start(options: SuiteOptions) -> anyhow::Result<RunningSuite> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let routing_listener = bind(loopback).await?;
    let conversation_listener = bind(loopback).await?;
    let reporting_listener = bind(loopback).await?;
    let gateway_internal_listener = bind(loopback).await?;
    let gateway_listener = bind(options.gateway_listen)
        .await
        .with_context(|| format!("binding the gateway to {}", options.gateway_listen))?;
    let routing = routing_listener.local_addr()?;
    let conversation = conversation_listener.local_addr()?;
    let reporting = reporting_listener.local_addr()?;
    let gateway = gateway_listener.local_addr()?;
    let gateway_internal = gateway_internal_listener.local_addr()?;

    let mut metrics = Vec::new();
    let mut metrics_addr = |name: &'static str| -> anyhow::Result<Option<SocketAddr>> {
        if !options.metrics {
            return Ok(None);
        }
        // Pick a free port now so that it can be printed; the service binds it itself.
        let addr = std::net::TcpListener::bind(loopback)?.local_addr()?;
        metrics.push((name, addr));
        Ok(Some(addr))
    };

    let urls = [
        ("routing", options.storage.url_for("routing").await?),
        (
            "conversation",
            options.storage.url_for("conversation").await?,
        ),
        ("reporting", options.storage.url_for("reporting").await?),
        ("gateway", options.storage.url_for("gateway").await?),
    ];
    let url_of = |name: &str| {
        urls.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, url)| url.clone())
            .unwrap_or_default()
    };
    let http = |addr: SocketAddr| format!("http://{addr}");

    let routing_config = routing_svc::Config {
        listen: routing,
        metrics_listen: metrics_addr("routing-svc")?,
        database_url: url_of("routing"),
        identity_secret: options.identity_secret.clone(),
        conversation_url: http(conversation),
        directory_url: http(gateway_internal),
        ..Default::default()
    };
    let conversation_config = conversation_svc::Config {
        listen: conversation,
        metrics_listen: metrics_addr("conversation-svc")?,
        database_url: url_of("conversation"),
        identity_secret: options.identity_secret.clone(),
        routing_url: http(routing),
        directory_url: http(gateway_internal),
        ..Default::default()
    };
    let reporting_config = reporting_svc::Config {
        listen: reporting,
        metrics_listen: metrics_addr("reporting-svc")?,
        database_url: url_of("reporting"),
        identity_secret: options.identity_secret.clone(),
        conversation_url: http(conversation),
        ..Default::default()
    };
    let gateway_config = gateway::Config {
        listen: gateway,
        internal_listen: gateway_internal,
        metrics_listen: metrics_addr("gateway")?,
        database_url: url_of("gateway"),
        identity_secret: options.identity_secret.clone(),
        upstreams: gateway::Upstreams {
            routing_url: http(routing),
            conversation_url: http(conversation),
            reporting_url: http(reporting),
        },
        auth: gateway::AuthConfig {
            hs256_secret: Some(options.jwt_secret.clone()),
            operators: options
                .operators
                .iter()
                .map(|(name, key)| gateway::OperatorKey {
                    name: name.clone(),
                    sha256: gateway::operator_key_hash(key),
                })
                .collect(),
            ..Default::default()
        },
        ..Default::default()
    };

    let shutdown = ShutdownSignal::new();
    let tasks = vec![
        spawn("routing-svc", routing_listener, &shutdown, |l, s| {
            routing_svc::serve(routing_config, l, s)
        }),
        spawn(
            "conversation-svc",
            conversation_listener,
            &shutdown,
            |l, s| conversation_svc::serve(conversation_config, l, s),
        ),
        spawn("reporting-svc", reporting_listener, &shutdown, |l, s| {
            reporting_svc::serve(reporting_config, l, s)
        }),
        spawn("gateway", gateway_listener, &shutdown, move |l, s| {
            let listeners = gateway::Listeners {
                public: l,
                internal: gateway_internal_listener,
            };
            gateway::serve(gateway_config, listeners, s)
        }),
    ];
    let mut suite = RunningSuite {
        addresses: Addresses {
            gateway,
            gateway_internal,
            routing,
            conversation,
            reporting,
            metrics,
        },
        database_urls: vec![
            ("routing-svc", url_of("routing")),
            ("conversation-svc", url_of("conversation")),
            ("reporting-svc", url_of("reporting")),
            ("gateway", url_of("gateway")),
        ],
        shutdown,
        tasks,
    };
    if let Err(err) = suite.wait_serving().await {
        let _ = suite.stop().await;
        return Err(err);
    }
    Ok(suite)
}

fn spawn<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    shutdown: &ShutdownSignal,
    serve: F,
) -> (&'static str, JoinHandle<anyhow::Result<()>>)
where
    F: FnOnce(TcpListener, ShutdownSignal) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let fut = serve(listener, shutdown.clone());
    let shutdown = shutdown.clone();
    let handle = tokio::spawn(async move {
        let result = fut.await;
        if let Err(err) = &result {
            tracing::error!(service = name, error = %format!("{err:#}"), "service stopped with an error");
            // One service down means the suite is not what the user asked for: stop all.
            shutdown.trigger();
        }
        result
    });
    (name, handle)
}

impl RunningSuite {
    async fn wait_serving(&mut self) -> anyhow::Result<()> {
        let targets = [
            ("routing-svc", self.addresses.routing),
            ("conversation-svc", self.addresses.conversation),
            ("reporting-svc", self.addresses.reporting),
            ("gateway", self.addresses.gateway),
            ("gateway", self.addresses.gateway_internal),
        ];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        for (name, addr) in targets {
            loop {
                if let Some((_, task)) = self.tasks.iter().find(|(n, _)| *n == name)
                    && task.is_finished()
                {
                    bail!("{name} stopped while starting (see its log above)");
                }
                if serving(addr).await {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("{name} did not report SERVING on {addr} within 120 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// A signal that stops the suite when triggered (for example from SIGTERM).
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.shutdown.clone()
    }

    /// Resolves when any service stops or the shutdown signal fires.
    pub async fn stopped(&self) {
        self.shutdown.wait().await;
    }

    /// Stops every service gracefully and reports the first error any of them returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        let mut first_error = None;
        for (name, task) in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    first_error.get_or_insert(err.context(format!("{name} failed")));
                }
                Err(join) => {
                    first_error.get_or_insert(anyhow::anyhow!("{name} panicked: {join}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

async fn serving(addr: SocketAddr) -> bool {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a loopback URL is valid")
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
    else {
        return false;
    };
    let mut client = HealthClient::new(channel);
    matches!(
        client.check(HealthCheckRequest { service: String::new() }).await,
        Ok(response) if response.get_ref().status == ServingStatus::Serving as i32
    )
}
