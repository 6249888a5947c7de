//! Starts the four services in one process, each on its own loopback listener and talking
//! gRPC to the others exactly as in production. Used by `switchboard dev` and by the
//! end-to-end tests, so both exercise the same wiring.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use sqlx::Connection;
use switchboard_server_kit::server::{ShutdownSignal, bind};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
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
                postgres_database(server_url, &format!("{prefix}_{service}")).await
            }
        }
    }
}

/// The URL of database `name` on the PostgreSQL server at `server_url` (a URL naming any
/// database there), created if missing.
pub(crate) async fn postgres_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .with_context(|| format!("connecting to {server_url}"))?;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
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
        .map_or(server_url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
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
    /// Whether a stopped service may start again with its data (not in memory).
    restartable: bool,
    shutdown: ShutdownSignal,
    services: Vec<Service>,
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
        routing_url: http(routing),
        directory_url: http(gateway_internal),
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
    let services = vec![
        Service::new(
            "routing-svc",
            vec![routing],
            Box::new(move |mut listeners, signal| {
                let listener = listeners.remove(0);
                Box::pin(routing_svc::serve(routing_config.clone(), listener, signal))
            }),
        ),
        Service::new(
            "conversation-svc",
            vec![conversation],
            Box::new(move |mut listeners, signal| {
                let listener = listeners.remove(0);
                Box::pin(conversation_svc::serve(
                    conversation_config.clone(),
                    listener,
                    signal,
                ))
            }),
        ),
        Service::new(
            "reporting-svc",
            vec![reporting],
            Box::new(move |mut listeners, signal| {
                let listener = listeners.remove(0);
                Box::pin(reporting_svc::serve(
                    reporting_config.clone(),
                    listener,
                    signal,
                ))
            }),
        ),
        Service::new(
            "gateway",
            vec![gateway, gateway_internal],
            Box::new(move |mut listeners, signal| {
                let internal = listeners.remove(1);
                let public = listeners.remove(0);
                let listeners = gateway::Listeners { public, internal };
                Box::pin(gateway::serve(gateway_config.clone(), listeners, signal))
            }),
        ),
    ];
    let first_listeners = [
        vec![routing_listener],
        vec![conversation_listener],
        vec![reporting_listener],
        vec![gateway_listener, gateway_internal_listener],
    ];
    for (service, listeners) in services.iter().zip(first_listeners) {
        *service.run.lock().await = Some(service.spawn(listeners, &shutdown));
    }
    let suite = RunningSuite {
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
        restartable: !matches!(options.storage, Storage::InMemory),
        shutdown,
        services,
    };
    for service in &suite.services {
        if let Err(err) = service.wait_serving().await {
            let _ = suite.stop().await;
            return Err(err);
        }
    }
    Ok(suite)
}

/// Runs one service on its listeners until its shutdown signal fires.
type Launch = Box<
    dyn Fn(Vec<TcpListener>, ShutdownSignal) -> BoxFuture<'static, anyhow::Result<()>>
        + Send
        + Sync,
>;

/// One service of the suite, with what it takes to start it again on the same addresses
/// and the same database.
struct Service {
    name: &'static str,
    /// Where it listens, in the order `launch` takes the listeners.
    addrs: Vec<SocketAddr>,
    launch: Launch,
    /// The current run; `None` while the service is stopped on purpose.
    run: Mutex<Option<Run>>,
}

/// One run of a service: its own shutdown signal (fired by the suite's too) and its task.
struct Run {
    signal: ShutdownSignal,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Service {
    fn new(name: &'static str, addrs: Vec<SocketAddr>, launch: Launch) -> Service {
        Service {
            name,
            addrs,
            launch,
            run: Mutex::new(None),
        }
    }

    /// Starts a run on `listeners`. The run stops when the suite stops or when it is
    /// stopped on its own; should it fail unasked, it stops the whole suite.
    fn spawn(&self, listeners: Vec<TcpListener>, suite: &ShutdownSignal) -> Run {
        let signal = {
            let suite = suite.clone();
            ShutdownSignal::from_future(async move { suite.wait().await })
        };
        let fut = (self.launch)(listeners, signal.clone());
        let name = self.name;
        let asked = signal.clone();
        let suite = suite.clone();
        let task = tokio::spawn(async move {
            let result = fut.await;
            if let Err(err) = &result {
                tracing::error!(service = name, error = %format!("{err:#}"), "service stopped with an error");
                if !asked.is_triggered() {
                    // One service down means the suite is not what the user asked for: stop all.
                    suite.trigger();
                }
            }
            result
        });
        Run { signal, task }
    }

    /// Waits until every address of the running service reports SERVING.
    async fn wait_serving(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        for &addr in &self.addrs {
            loop {
                let finished = self
                    .run
                    .lock()
                    .await
                    .as_ref()
                    .is_none_or(|run| run.task.is_finished());
                if finished {
                    bail!("{} stopped while starting (see its log above)", self.name);
                }
                if serving(addr).await {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!(
                        "{} did not report SERVING on {addr} within 120 s",
                        self.name
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// Binds `addr` again after the service that held it stopped; waits a little should the
/// port still be taken (a listener closing, or another process briefly holding it).
async fn rebind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(err)
                if err.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => return Err(err).with_context(|| format!("binding {addr} again")),
        }
    }
}

impl RunningSuite {
    /// A signal that stops the suite when triggered (for example from SIGTERM).
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.shutdown.clone()
    }

    /// Resolves when any service stops unasked or the shutdown signal fires.
    pub async fn stopped(&self) {
        self.shutdown.wait().await;
    }

    /// The services by name: `routing-svc`, `conversation-svc`, `reporting-svc`, `gateway`.
    pub fn service_names(&self) -> Vec<&'static str> {
        self.services.iter().map(|s| s.name).collect()
    }

    fn service(&self, name: &str) -> anyhow::Result<&Service> {
        self.services
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("no service named {name:?} in the suite"))
    }

    /// Stops one service gracefully while the others keep running, as an outage of that
    /// service would look to them: its clients get UNAVAILABLE until it starts again.
    /// Does not stop the suite. Returns the error the service stopped with, if any.
    pub async fn stop_service(&self, name: &str) -> anyhow::Result<()> {
        let service = self.service(name)?;
        let run = service
            .run
            .lock()
            .await
            .take()
            .with_context(|| format!("{name} is not running"))?;
        run.signal.trigger();
        match run.task.await {
            Ok(result) => result.with_context(|| format!("{name} failed while stopping")),
            Err(join) => Err(anyhow::anyhow!("{name} panicked: {join}")),
        }
    }

    /// Starts a service stopped with [`RunningSuite::stop_service`] again, on the same
    /// addresses and the same database, and waits until it reports SERVING. Refused on
    /// in-memory storage, where the service would start with nothing.
    pub async fn start_service(&self, name: &str) -> anyhow::Result<()> {
        let service = self.service(name)?;
        if !self.restartable {
            bail!("{name} keeps its data in memory: started again it would have none");
        }
        if self.shutdown.is_triggered() {
            bail!("the suite is stopping");
        }
        {
            let mut run = service.run.lock().await;
            if run.is_some() {
                bail!("{name} is running; stop it first");
            }
            let mut listeners = Vec::with_capacity(service.addrs.len());
            for &addr in &service.addrs {
                listeners.push(rebind(addr).await?);
            }
            *run = Some(service.spawn(listeners, &self.shutdown));
        }
        service.wait_serving().await
    }

    /// Stops every service gracefully and reports the first error any of them returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        let mut first_error = None;
        for service in self.services {
            let name = service.name;
            let Some(run) = service.run.into_inner() else {
                continue;
            };
            match run.task.await {
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

pub(crate) async fn serving(addr: SocketAddr) -> bool {
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
