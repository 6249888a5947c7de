//! The scenarios: what each starts, what it sends, and its baseline.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use anyhow::Context;
use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::routing::v1 as routing;
use switchboard_server_kit::db::Db;
use switchboard_server_kit::identity::{
    Identity, IdentityKey, PrincipalKind, Role, signed_channel,
};
use switchboard_server_kit::testing::ScratchDatabases;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::load::{self, CallFuture, Run, Target};
use super::report::{Better, Figure, ScenarioResult};
use super::{Plan, flow, proc_stats};
use crate::seed::{self, ApiKey, Bearer, DevCredentials, DevSecrets};
use crate::suite::{self, RunningSuite, Storage, SuiteOptions};

/// Every scenario, in the order they run.
pub const NAMES: [&str; 17] = [
    "grpc-ceiling",
    "bare-proxy",
    "gateway-health",
    "gateway-read",
    "create-conversation",
    "idle-streams",
    "offer-latency",
    "backlog-isolation",
    "lifecycle",
    "outbox-lag",
    "routing-scale",
    "routing-rules",
    "offer-expiry",
    "routing-replicas",
    "reports",
    "intake",
    "exports",
];

/// Where a suite scenario keeps its data.
#[derive(Clone, Copy)]
pub(super) enum Store<'a> {
    Sqlite,
    /// Fresh databases on a PostgreSQL server, all named from the run's prefix.
    Postgres(&'a ScratchDatabases),
}

impl Store<'_> {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
}

/// Figures that one scenario hands to a later one of the same run.
#[derive(Default)]
struct Shared {
    /// CPU per call a bare two-leg HTTP/2 proxy adds, in µs.
    proxy_added_cpu_us: Option<f64>,
}

pub async fn run_all(
    plan: &Plan,
    filters: &[String],
    data_root: &Path,
    postgres: Option<&ScratchDatabases>,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let selected =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let mut shared = Shared::default();
    let mut results = Vec::new();
    let mut stores = vec![Store::Sqlite];
    if let Some(databases) = postgres {
        stores.push(Store::Postgres(databases));
    }
    for name in NAMES {
        if !selected(name) {
            continue;
        }
        let scenario_stores: Vec<Store> = match (name, postgres) {
            ("gateway-read" | "create-conversation" | "reports" | "intake" | "exports", _) => {
                stores.clone()
            }
            ("routing-replicas", Some(databases)) => vec![Store::Postgres(databases)],
            ("routing-replicas", None) => {
                // On stdout with the table, so that a run without a server says so.
                writeln!(
                    std::io::stdout().lock(),
                    "routing-replicas not run: it needs a PostgreSQL server ({} names one)",
                    switchboard_server_kit::testing::POSTGRES_URL_VAR
                )?;
                continue;
            }
            _ => vec![Store::Sqlite],
        };
        for store in scenario_stores {
            let dir = data_root.join(format!("{name}-{}", store.name()));
            std::fs::create_dir_all(&dir)?;
            proc_stats::reset_peak_rss();
            let started = Instant::now();
            let mut result = match name {
                "grpc-ceiling" => grpc_ceiling(plan).await,
                "bare-proxy" => bare_proxy(plan, &mut shared).await,
                "gateway-health" => gateway_health(plan, &dir).await,
                "gateway-read" => gateway_read(plan, &dir, store, &shared).await,
                "create-conversation" => create_conversation(plan, &dir, store).await,
                "idle-streams" => idle_streams(plan, &dir).await,
                "offer-latency" => flow::offer_latency(plan, &dir).await,
                "backlog-isolation" => flow::backlog_isolation(plan, &dir).await,
                "lifecycle" => flow::lifecycle(plan, &dir).await,
                "outbox-lag" => flow::outbox_lag(plan, &dir).await,
                "routing-scale" => super::routing::routing_scale(plan, &dir).await,
                "routing-rules" => super::routing::routing_rules(plan, &dir).await,
                "offer-expiry" => super::routing::offer_expiry(plan, &dir).await,
                "reports" => super::reports::reports(plan, &dir, store).await,
                "intake" => super::intake::intake(plan, &dir, store).await,
                "exports" => super::exports::exports(plan, &dir, store).await,
                "routing-replicas" => match store {
                    Store::Postgres(databases) => {
                        super::routing::routing_replicas(plan, &dir, databases).await
                    }
                    Store::Sqlite => unreachable!("routing-replicas runs on PostgreSQL"),
                },
                _ => unreachable!("every name has a scenario"),
            }
            .with_context(|| format!("scenario {name} ({})", store.name()))?;
            result.wall_s = started.elapsed().as_secs_f64();
            results.push(result);
        }
    }
    Ok(results)
}

pub(super) fn scenario(
    name: &str,
    storage: &'static str,
    description: &'static str,
) -> ScenarioResult {
    ScenarioResult {
        name: name.to_owned(),
        storage,
        description,
        figures: Vec::new(),
        runs: Vec::new(),
        errors: 0,
        wall_s: 0.0,
    }
}

impl ScenarioResult {
    pub(super) fn add_run(&mut self, label: &str, run: &Run) {
        self.errors += run.errors;
        self.runs.push(run.to_json(label));
    }

    /// Peak memory of the scenario against the resident size once its servers were up.
    pub(super) fn memory_figure(&mut self, idle_kib: u64) {
        self.figures.push(Figure::new(
            "peak RSS of the process during the scenario (VmHWM)",
            "MiB",
            proc_stats::peak_rss_kib() as f64 / 1024.0,
            "RSS once started, before load",
            idle_kib as f64 / 1024.0,
            Better::Lower,
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Targets

pub(super) fn target<F, Fut>(f: F) -> Target
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Arc::new(move |i| -> CallFuture { Box::pin(f(i)) })
}

async fn channel(addr: SocketAddr) -> anyhow::Result<tonic::transport::Channel> {
    seed::connect(addr).await
}

fn health_target(channel: tonic::transport::Channel) -> Target {
    let client = HealthClient::new(channel);
    target(move |_| {
        let mut client = client.clone();
        async move {
            client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok(())
        }
    })
}

// ---------------------------------------------------------------------------------------
// Servers the scenarios start besides the suite

/// A tonic server with the health service only: the gRPC ceiling.
async fn bare_health_server(shutdown: tokio_util_shutdown::Token) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (_reporter, service) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                // As server-kit serves: Nagle off, or calls wait for delayed ACKs.
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown.wait(),
            )
            .await;
    });
    Ok(addr)
}

/// A bare two-leg HTTP/2 proxy: a tonic server whose only service forwards every
/// `grpc.health.v1.Health` call, frames untouched, over one tonic channel to `upstream`.
/// The floor under any gRPC gateway: two HTTP/2 stacks and nothing else.
#[derive(Clone)]
struct BareProxy(tonic::transport::Channel);

impl NamedService for BareProxy {
    const NAME: &'static str = "grpc.health.v1.Health";
}

impl tower::Service<http::Request<tonic::body::Body>> for BareProxy {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let mut upstream = self.0.clone();
        Box::pin(async move {
            use tower::ServiceExt;
            let answer = match upstream.ready().await {
                Ok(ready) => ready.call(req).await,
                Err(err) => Err(err),
            };
            Ok(match answer {
                Ok(response) => response.map(tonic::body::Body::new),
                Err(err) => tonic::Status::unavailable(err.to_string()).into_http(),
            })
        })
    }
}

async fn bare_proxy_server(
    upstream: SocketAddr,
    shutdown: tokio_util_shutdown::Token,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let proxy = BareProxy(channel(upstream).await?);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(proxy)
            .serve_with_incoming_shutdown(
                // As server-kit serves: Nagle off, or calls wait for delayed ACKs.
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown.wait(),
            )
            .await;
    });
    Ok(addr)
}

/// Stops the scenario's own servers when dropped.
mod tokio_util_shutdown {
    use std::sync::Arc;

    use tokio::sync::Notify;

    #[derive(Clone, Default)]
    pub struct Token(Arc<(Notify, std::sync::atomic::AtomicBool)>);

    impl Token {
        pub async fn wait(self) {
            loop {
                let notified = self.0.0.notified();
                if self.0.1.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        }

        pub fn trigger(&self) {
            self.0.1.store(true, std::sync::atomic::Ordering::SeqCst);
            self.0.0.notify_waiters();
        }
    }

    /// Triggers the token when dropped.
    pub struct Guard(pub Token);

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.trigger();
        }
    }
}

/// The suite on a fresh data directory (or fresh PostgreSQL databases) with the demo tenant.
pub(super) async fn start_suite(
    dir: &Path,
    store: Store<'_>,
) -> anyhow::Result<(RunningSuite, DevCredentials, DevSecrets)> {
    start_suite_with(dir, store, false).await
}

/// [`start_suite`], with each service's Prometheus metrics on a loopback port when `metrics`.
pub(super) async fn start_suite_with(
    dir: &Path,
    store: Store<'_>,
    metrics: bool,
) -> anyhow::Result<(RunningSuite, DevCredentials, DevSecrets)> {
    let secrets = DevSecrets::generate();
    let storage = match store {
        Store::Sqlite => Storage::Directory(dir.to_path_buf()),
        Store::Postgres(databases) => Storage::Postgres {
            server_url: databases.server_url().to_owned(),
            prefix: format!("{}_{}", databases.prefix(), unique_part()),
        },
    };
    let running = suite::start(SuiteOptions {
        storage,
        gateway_listen: ([127, 0, 0, 1], 0).into(),
        identity_secret: secrets.identity_secret.clone(),
        jwt_secret: secrets.jwt_secret.clone(),
        operators: secrets.operators(),
        metrics,
    })
    .await?;
    let gateway_db = running
        .database_urls
        .iter()
        .find(|(name, _)| *name == "gateway")
        .map(|(_, url)| url.clone())
        .unwrap_or_default();
    match seed::seed(&gateway_db, running.addresses.gateway, &secrets).await {
        Ok(credentials) => Ok((running, credentials, secrets)),
        Err(err) => {
            let _ = running.stop().await;
            Err(err.context("creating the demo tenant"))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Measuring a subject against its baseline

/// The closed-loop run with the highest throughput. On a shared machine interference only
/// ever slows a run down (another tenant on the same cores halves throughput and doubles
/// CPU per call, measured), so the best of alternating rounds is the least disturbed
/// estimate of capacity for baseline and subject alike; every round is in the JSON.
pub(super) fn best(runs: Vec<Run>) -> Run {
    runs.into_iter()
        .max_by(|a, b| a.throughput().total_cmp(&b.throughput()))
        .expect("at least one round")
}

/// The median throughput of closed-loop rounds.
fn median_throughput(runs: &[Run]) -> f64 {
    let mut values: Vec<f64> = runs.iter().map(Run::throughput).collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The open-loop run with the median p99: one stall of the shared machine does not decide
/// the figure, and every quantile quoted comes from the same run.
pub(super) fn median_tail(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.latency_us(0.99).total_cmp(&b.latency_us(0.99)));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

struct Compared {
    baseline_closed: Run,
    subject_closed: Run,
    /// The subject's open-loop run whose figures were quoted.
    subject_open: Run,
}

/// Measures `subject` against `baseline`: closed-loop maximum throughput and CPU per call
/// (rounds alternating the two, best kept), then both open-loop at the same offered
/// rate, half of the lower typical (median round) maximum, with latency from the intended start.
async fn compare(
    plan: &Plan,
    result: &mut ScenarioResult,
    baseline: (&str, &Target),
    subject: (&str, &Target),
    throughput_goal: Option<&'static str>,
) -> anyhow::Result<Compared> {
    let (base_name, base) = baseline;
    let (subj_name, subj) = subject;
    load::warm_up(base, plan.in_flight, plan.warm_up_calls)
        .await
        .with_context(|| format!("warming up {base_name}"))?;
    load::warm_up(subj, plan.in_flight, plan.warm_up_calls)
        .await
        .with_context(|| format!("warming up {subj_name}"))?;
    let (mut base_runs, mut subj_runs) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        base_runs.push(
            load::closed_loop(base, plan.in_flight, plan.closed_calls, plan.closed_time).await,
        );
        subj_runs.push(
            load::closed_loop(subj, plan.in_flight, plan.closed_calls, plan.closed_time).await,
        );
    }
    for run in &base_runs {
        result.add_run(&format!("{base_name}, closed loop"), run);
    }
    for run in &subj_runs {
        result.add_run(&format!("{subj_name}, closed loop"), run);
    }
    // The offered rate of the open-loop runs: half of the typical (median round) maximum of
    // the slower side, so that a round slowed down by a neighbour on the shared cores is
    // still below saturation; both sides get the same rate.
    let typical = median_throughput(&base_runs).min(median_throughput(&subj_runs));
    let base_closed = best(base_runs);
    let subj_closed = best(subj_runs);
    let n = plan.in_flight;
    let mut throughput = Figure::new(
        format!("{subj_name}: max throughput ({n} in flight)"),
        "calls/s",
        subj_closed.throughput(),
        base_name,
        base_closed.throughput(),
        Better::Higher,
    );
    if let Some(goal) = throughput_goal {
        throughput = throughput.goal(goal);
    }
    result.figures.push(throughput);
    result.figures.push(Figure::new(
        format!("{subj_name}: process CPU per call (closed loop)"),
        "µs",
        subj_closed.cpu_per_call_us(),
        base_name,
        base_closed.cpu_per_call_us(),
        Better::Lower,
    ));

    let rate = (0.5 * typical).max(1.0);
    let (mut base_runs, mut subj_runs) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        base_runs.push(load::open_loop(base, rate, plan.open_time, plan.open_max_in_flight).await);
        subj_runs.push(load::open_loop(subj, rate, plan.open_time, plan.open_max_in_flight).await);
    }
    for run in &base_runs {
        result.add_run(&format!("{base_name}, open loop"), run);
    }
    for run in &subj_runs {
        result.add_run(&format!("{subj_name}, open loop"), run);
    }
    let base_open = median_tail(base_runs);
    let subj_open = median_tail(subj_runs);
    for (q, label) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")] {
        result.figures.push(Figure::new(
            format!("{subj_name}: {label} latency at {rate:.0}/s offered (from intended start)"),
            "µs",
            subj_open.latency_us(q),
            base_name,
            base_open.latency_us(q),
            Better::Lower,
        ));
    }
    Ok(Compared {
        baseline_closed: base_closed,
        subject_closed: subj_closed,
        subject_open: subj_open,
    })
}

// ---------------------------------------------------------------------------------------
// The scenarios

/// (a) The gRPC ceiling: the trivial unary RPC on a bare tonic server.
async fn grpc_ceiling(plan: &Plan) -> anyhow::Result<ScenarioResult> {
    let mut result = scenario(
        "grpc-ceiling",
        "none",
        "grpc.health.v1 Check on a bare tonic server with only health: the ceiling every other figure sits under",
    );
    let token = tokio_util_shutdown::Token::default();
    let _stop = tokio_util_shutdown::Guard(token.clone());
    let addr = bare_health_server(token).await?;
    let check = health_target(channel(addr).await?);
    let idle = proc_stats::rss_kib();
    load::warm_up(&check, plan.in_flight, plan.warm_up_calls).await?;
    let one = load::closed_loop(&check, 1, plan.closed_calls, plan.closed_time).await;
    let mut runs = Vec::new();
    for _ in 0..plan.rounds {
        runs.push(
            load::closed_loop(&check, plan.in_flight, plan.closed_calls, plan.closed_time).await,
        );
    }
    for run in &runs {
        result.add_run("bare Check, closed loop", run);
    }
    let rate = (median_throughput(&runs) * 0.5).max(1.0);
    let many = best(runs);
    let mut runs = Vec::new();
    for _ in 0..plan.rounds {
        runs.push(load::open_loop(&check, rate, plan.open_time, plan.open_max_in_flight).await);
    }
    result.add_run("bare Check, 1 in flight", &one);
    for run in &runs {
        result.add_run("bare Check, open loop", run);
    }
    let open = median_tail(runs);
    let n = plan.in_flight;
    result.figures.push(Figure::new(
        format!("bare Check: max throughput ({n} in flight)"),
        "calls/s",
        many.throughput(),
        "same, 1 in flight",
        one.throughput(),
        Better::Higher,
    ));
    result.figures.push(Figure::new(
        format!("bare Check: process CPU per call ({n} in flight)"),
        "µs",
        many.cpu_per_call_us(),
        "same, 1 in flight",
        one.cpu_per_call_us(),
        Better::Lower,
    ));
    result.figures.push(Figure::new(
        "bare Check: achieved rate, open loop at half the max",
        "calls/s",
        open.throughput(),
        "offered rate",
        rate,
        Better::Higher,
    ));
    result.figures.push(Figure::new(
        format!("bare Check: p99 latency at {rate:.0}/s offered (from intended start)"),
        "µs",
        open.latency_us(0.99),
        "p50 of the same run",
        open.latency_us(0.5),
        Better::Lower,
    ));
    result.figures.push(Figure::new(
        "bare Check: p50 latency, 1 in flight",
        "µs",
        one.latency_us(0.5),
        format!("p50 at {rate:.0}/s offered"),
        open.latency_us(0.5),
        Better::Lower,
    ));
    result.memory_figure(idle);
    Ok(result)
}

/// (b) The gateway's floor: the same Check through a bare two-leg HTTP/2 proxy.
async fn bare_proxy(plan: &Plan, shared: &mut Shared) -> anyhow::Result<ScenarioResult> {
    let mut result = scenario(
        "bare-proxy",
        "none",
        "Check through a bare two-leg HTTP/2 proxy (tonic server + tonic channel, frames untouched) vs direct: the floor under the gateway",
    );
    let token = tokio_util_shutdown::Token::default();
    let _stop = tokio_util_shutdown::Guard(token.clone());
    let upstream = bare_health_server(token.clone()).await?;
    let proxy = bare_proxy_server(upstream, token).await?;
    let direct = health_target(channel(upstream).await?);
    let proxied = health_target(channel(proxy).await?);
    let idle = proc_stats::rss_kib();
    let compared = compare(
        plan,
        &mut result,
        ("Check direct to the bare server", &direct),
        ("Check through the bare proxy", &proxied),
        None,
    )
    .await?;
    shared.proxy_added_cpu_us = Some(
        compared.subject_closed.cpu_per_call_us() - compared.baseline_closed.cpu_per_call_us(),
    );
    result.memory_figure(idle);
    Ok(result)
}

/// (b') Check answered by the gateway vs by a service (both real servers of the suite).
async fn gateway_health(plan: &Plan, dir: &Path) -> anyhow::Result<ScenarioResult> {
    let mut result = scenario(
        "gateway-health",
        "sqlite",
        "Check answered by the gateway's public listener (its own health service, not proxied) vs by routing-svc",
    );
    let (running, _credentials, _secrets) = start_suite(dir, Store::Sqlite).await?;
    let outcome = async {
        let direct = health_target(channel(running.addresses.routing).await?);
        let gateway = health_target(channel(running.addresses.gateway).await?);
        let idle = proc_stats::rss_kib();
        compare(
            plan,
            &mut result,
            ("Check on routing-svc", &direct),
            ("Check on the gateway", &gateway),
            None,
        )
        .await?;
        result.memory_figure(idle);
        anyhow::Ok(())
    }
    .await;
    running.stop().await?;
    outcome?;
    Ok(result)
}

fn agent_identity(credentials: &DevCredentials) -> Identity {
    let agent = credentials.user("agent1");
    Identity {
        tenant_id: credentials.tenant_id.clone(),
        tenant_ancestry: Vec::new(),
        principal_id: agent.id.clone(),
        principal_kind: PrincipalKind::User,
        display_name: agent.display_name.clone(),
        roles: vec![Role::Agent],
        enabled_supervisor_actions: Vec::new(),
        time_zone: String::new(),
        reopen_window_secs: 0,
    }
}

fn user_identity(credentials: &DevCredentials, handle: &str) -> Identity {
    let user = credentials.user(handle);
    Identity {
        principal_id: user.id.clone(),
        display_name: user.display_name.clone(),
        ..agent_identity(credentials)
    }
}

fn bot_identity(credentials: &DevCredentials) -> Identity {
    Identity {
        tenant_id: credentials.tenant_id.clone(),
        tenant_ancestry: Vec::new(),
        principal_id: credentials.bot.id.clone(),
        principal_kind: PrincipalKind::ApiKey,
        display_name: credentials.bot.display_name.clone(),
        roles: vec![Role::Bot],
        enabled_supervisor_actions: Vec::new(),
        time_zone: String::new(),
        reopen_window_secs: 0,
    }
}

/// (c) A real read proxied by the gateway vs the same read straight to its service.
async fn gateway_read(
    plan: &Plan,
    dir: &Path,
    store: Store<'_>,
    shared: &Shared,
) -> anyhow::Result<ScenarioResult> {
    let mut result = scenario(
        "gateway-read",
        store.name(),
        "AgentService.GetAgentState of demo agent1: through the gateway (bearer token) vs direct to routing-svc with a signed identity",
    );
    let (running, credentials, secrets) = start_suite(dir, store).await?;
    let outcome = async {
        let key = IdentityKey::new(&secrets.identity_secret)?;
        let direct_client = routing::agent_service_client::AgentServiceClient::new(signed_channel(
            &format!("http://{}", running.addresses.routing),
            key,
            agent_identity(&credentials),
        )?);
        let gateway_client = routing::agent_service_client::AgentServiceClient::with_interceptor(
            channel(running.addresses.gateway).await?,
            Bearer::new(&credentials.user("agent1").token)?,
        );
        let direct = target(move |_| {
            let mut client = direct_client.clone();
            async move {
                client
                    .get_agent_state(routing::GetAgentStateRequest::default())
                    .await?;
                Ok(())
            }
        });
        let gateway = target(move |_| {
            let mut client = gateway_client.clone();
            async move {
                client
                    .get_agent_state(routing::GetAgentStateRequest::default())
                    .await?;
                Ok(())
            }
        });
        let idle = proc_stats::rss_kib();
        let compared = compare(
            plan,
            &mut result,
            ("GetAgentState direct to routing-svc", &direct),
            ("GetAgentState via gateway", &gateway),
            Some(">= 0.7"),
        )
        .await?;
        let added =
            compared.subject_closed.cpu_per_call_us() - compared.baseline_closed.cpu_per_call_us();
        if let Some(proxy_added) = shared.proxy_added_cpu_us {
            result.figures.push(
                Figure::new(
                    "CPU per call the gateway adds to GetAgentState",
                    "µs",
                    added,
                    "CPU per call a bare two-leg proxy adds (bare-proxy)",
                    proxy_added,
                    Better::Lower,
                )
                .goal("<= 1.2"),
            );
        }
        result.memory_figure(idle);
        anyhow::Ok(())
    }
    .await;
    running.stop().await?;
    outcome?;
    Ok(result)
}

/// A new, empty database `<run prefix>_<random>_<what>` among the run's databases; its URL.
pub(super) async fn create_database(
    databases: &ScratchDatabases,
    what: &str,
) -> anyhow::Result<String> {
    Ok(databases
        .create_suffixed(&format!("{}_{what}", unique_part()))
        .await?)
}

/// Twelve random hex digits: a database name part that no other of the run has.
fn unique_part() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A fresh database for the raw one-row transaction baseline, with the services' settings
/// (server-kit `Db`: the same SQLite pragmas, one writer connection, `BEGIN IMMEDIATE`).
async fn raw_baseline_db(dir: &Path, store: Store<'_>) -> anyhow::Result<Db> {
    let url = match store {
        Store::Sqlite => format!("sqlite://{}/baseline.db", dir.display()),
        Store::Postgres(databases) => create_database(databases, "baseline").await?,
    };
    let db = Db::connect(&url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_rows (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, \
         payload TEXT NOT NULL, created_at BIGINT NOT NULL)",
    )
    .execute(db.writer())
    .await?;
    Ok(db)
}

pub(super) fn create_request(
    credentials: &DevCredentials,
    i: u64,
) -> conv::CreateConversationRequest {
    conv::CreateConversationRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        channel: Channel::Webchat as i32,
        queue_id: credentials.queue_id.clone(),
        contact: Some(conv::Contact {
            display_name: Some(format!("Bench customer {i}")),
            ..Default::default()
        }),
        first_message: "Hello, I need help with my order.".into(),
        channel_address: format!("bench-visitor-{i}-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    }
}

/// (d) CreateConversation through the gateway vs a raw one-row write transaction.
async fn create_conversation(
    plan: &Plan,
    dir: &Path,
    store: Store<'_>,
) -> anyhow::Result<ScenarioResult> {
    let mut result = scenario(
        "create-conversation",
        store.name(),
        "CreateConversation by the demo bot (API key) through the gateway vs a raw one-row INSERT transaction in a fresh database with the services' settings",
    );
    let (running, credentials, secrets) = start_suite(dir, store).await?;
    let outcome = async {
        let db = raw_baseline_db(dir, store).await?;
        let raw = target(move |i| {
            let db = db.clone();
            async move {
                let mut tx = db.begin().await?;
                sqlx::query(
                    "INSERT INTO bench_rows (id, tenant_id, payload, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind("bench-tenant")
                .bind(format!("row {i}: Hello, I need help with my order."))
                .bind(switchboard_server_kit::db::now_micros())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }
        });
        let credentials = Arc::new(credentials);
        let gateway_client =
            conv::conversation_service_client::ConversationServiceClient::with_interceptor(
                channel(running.addresses.gateway).await?,
                ApiKey::new(&credentials.bot.api_key)?,
            );
        let gateway = {
            let credentials = credentials.clone();
            target(move |i| {
                let mut client = gateway_client.clone();
                let request = create_request(&credentials, i);
                async move {
                    client.create_conversation(request).await?;
                    Ok(())
                }
            })
        };
        let direct_client = conv::conversation_service_client::ConversationServiceClient::new(
            signed_channel(
                &format!("http://{}", running.addresses.conversation),
                IdentityKey::new(&secrets.identity_secret)?,
                bot_identity(&credentials),
            )?,
        );
        let direct = {
            let credentials = credentials.clone();
            target(move |i| {
                let mut client = direct_client.clone();
                let request = create_request(&credentials, i);
                async move {
                    client.create_conversation(request).await?;
                    Ok(())
                }
            })
        };
        let idle = proc_stats::rss_kib();
        let compared = compare(
            plan,
            &mut result,
            ("raw one-row transaction", &raw),
            ("CreateConversation via gateway", &gateway),
            Some(">= 0.5"),
        )
        .await?;
        // Write tails: the slowest creates against the typical one of the same run, at
        // half the maximum rate (a busy-timeout storm shows here first).
        result.figures.push(
            Figure::new(
                "CreateConversation via gateway: p99.9 latency (write tails)",
                "µs",
                compared.subject_open.latency_us(0.999),
                "p50 of the same run",
                compared.subject_open.latency_us(0.5),
                Better::Lower,
            )
            .goal("<= 10"),
        );
        // The same create straight to conversation-svc: how much is the gateway's.
        let settled_kib = proc_stats::rss_kib();
        load::warm_up(&direct, plan.in_flight, plan.warm_up_calls).await?;
        let mut runs = Vec::new();
        for _ in 0..plan.rounds {
            runs.push(load::closed_loop(&direct, plan.in_flight, plan.closed_calls, plan.closed_time).await);
        }
        // Memory under steady load: resident size after these further conversations
        // against the size once the first ones were made; flat means no growth per
        // conversation (caches bounded, nothing kept per conversation in memory).
        let more: u64 = runs.iter().map(|run| run.ok).sum();
        result.figures.push(
            Figure::new(
                format!("resident memory after {more} more conversations"),
                "MiB",
                proc_stats::rss_kib() as f64 / 1024.0,
                "after the gateway runs",
                settled_kib as f64 / 1024.0,
                Better::Lower,
            )
            .goal("flat (about 1)"),
        );
        for run in &runs {
            result.add_run("CreateConversation direct to conversation-svc, closed loop", run);
        }
        let direct_closed = best(runs);
        let n = plan.in_flight;
        result.figures.push(Figure::new(
            format!("CreateConversation direct to conversation-svc: max throughput ({n} in flight)"),
            "calls/s",
            direct_closed.throughput(),
            "raw one-row transaction",
            compared.baseline_closed.throughput(),
            Better::Higher,
        ));
        result.figures.push(Figure::new(
            format!("CreateConversation via gateway: max throughput ({n} in flight)"),
            "calls/s",
            compared.subject_closed.throughput(),
            "CreateConversation direct to conversation-svc",
            direct_closed.throughput(),
            Better::Higher,
        ));
        result.figures.push(Figure::new(
            "CreateConversation via gateway: process CPU per call (closed loop)",
            "µs",
            compared.subject_closed.cpu_per_call_us(),
            "CreateConversation direct to conversation-svc",
            direct_closed.cpu_per_call_us(),
            Better::Lower,
        ));
        result.memory_figure(idle);
        anyhow::Ok(())
    }
    .await;
    running.stop().await?;
    outcome?;
    Ok(result)
}

/// Offer streams opened per HTTP/2 connection: below the servers' concurrent-stream limit.
pub(super) const STREAMS_PER_CONNECTION: usize = 100;

/// Opens `count` StreamOffers streams of `identity` straight to routing-svc and keeps them
/// read (snapshot, heartbeats) until `stop`; returns once every stream has its snapshot.
async fn open_offer_streams(
    routing_addr: SocketAddr,
    secret: &str,
    identity: &Identity,
    count: usize,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::with_capacity(count);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(count.max(1));
    let mut client = None;
    for i in 0..count {
        if i % STREAMS_PER_CONNECTION == 0 {
            client = Some(routing::agent_service_client::AgentServiceClient::new(
                signed_channel(
                    &format!("http://{routing_addr}"),
                    IdentityKey::new(secret)?,
                    identity.clone(),
                )?,
            ));
        }
        let mut client = client.clone().expect("set on the first stream");
        let mut stream = client
            .stream_offers(routing::StreamOffersRequest {})
            .await?
            .into_inner();
        let ready = ready_tx.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut signalled = false;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    message = stream.message() => match message {
                        Ok(Some(message)) => {
                            let end = matches!(
                                message.update,
                                Some(routing::stream_offers_response::Update::SnapshotEnd(_))
                            );
                            if end && !signalled {
                                signalled = true;
                                let _ = ready.send(()).await;
                            }
                        }
                        _ => return,
                    },
                }
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..count {
        ready_rx
            .recv()
            .await
            .context("an offer stream ended before its snapshot")?;
    }
    Ok(tasks)
}

/// (e) Routing writes with many idle offer streams open vs none: a write must wake only
/// the streams it concerns, so idle streams cost (almost) nothing.
async fn idle_streams(plan: &Plan, dir: &Path) -> anyhow::Result<ScenarioResult> {
    let mut result = scenario(
        "idle-streams",
        "sqlite",
        "SetPresence of demo agent1 (alternating AVAILABLE and AWAY) straight to routing-svc, with N StreamOffers streams of agent2 open and idle vs none open",
    );
    let (running, credentials, secrets) = start_suite(dir, Store::Sqlite).await?;
    let outcome = async {
        let writer = routing::agent_service_client::AgentServiceClient::new(signed_channel(
            &format!("http://{}", running.addresses.routing),
            IdentityKey::new(&secrets.identity_secret)?,
            agent_identity(&credentials),
        )?);
        let write = target(move |i| {
            let mut client = writer.clone();
            let presence = if i % 2 == 0 {
                routing::Presence::Away
            } else {
                routing::Presence::Available
            };
            async move {
                client
                    .set_presence(routing::SetPresenceRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        presence: presence as i32,
                        ..Default::default()
                    })
                    .await?;
                Ok(())
            }
        });
        let idle_identity = user_identity(&credentials, "agent2");
        let n = plan.idle_streams;
        load::warm_up(&write, plan.in_flight, plan.warm_up_calls).await?;
        let idle = proc_stats::rss_kib();
        let (mut base_runs, mut subj_runs) = (Vec::new(), Vec::new());
        let mut with_streams_kib = 0;
        for _ in 0..plan.rounds {
            base_runs.push(
                load::closed_loop(&write, plan.in_flight, plan.closed_calls, plan.closed_time)
                    .await,
            );
            let stop = tokio_util::sync::CancellationToken::new();
            let streams = open_offer_streams(
                running.addresses.routing,
                &secrets.identity_secret,
                &idle_identity,
                n,
                stop.clone(),
            )
            .await?;
            with_streams_kib = with_streams_kib.max(proc_stats::rss_kib());
            subj_runs.push(
                load::closed_loop(&write, plan.in_flight, plan.closed_calls, plan.closed_time)
                    .await,
            );
            stop.cancel();
            for stream in streams {
                let _ = stream.await;
            }
        }
        for run in &base_runs {
            result.add_run("SetPresence, no stream open, closed loop", run);
        }
        for run in &subj_runs {
            result.add_run(
                &format!("SetPresence, {n} idle offer streams open, closed loop"),
                run,
            );
        }
        let base = best(base_runs);
        let subject = best(subj_runs);
        let k = plan.in_flight;
        result.figures.push(Figure::new(
            format!("SetPresence with {n} idle offer streams: max throughput ({k} in flight)"),
            "calls/s",
            subject.throughput(),
            "no stream open",
            base.throughput(),
            Better::Higher,
        ));
        result.figures.push(
            Figure::new(
                format!("SetPresence with {n} idle offer streams: process CPU per write"),
                "µs",
                subject.cpu_per_call_us(),
                "no stream open",
                base.cpu_per_call_us(),
                Better::Lower,
            )
            .goal("<= 1.2"),
        );
        result.figures.push(Figure::new(
            format!("resident memory with {n} offer streams open"),
            "MiB",
            with_streams_kib as f64 / 1024.0,
            "RSS once started, before load",
            idle as f64 / 1024.0,
            Better::Lower,
        ));
        anyhow::Ok(())
    }
    .await;
    running.stop().await?;
    outcome?;
    Ok(result)
}
