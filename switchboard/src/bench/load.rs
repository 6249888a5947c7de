//! The load generator: closed-loop (N calls in flight, as fast as the server answers) and
//! open-loop (a fixed offered rate, latency counted from each call's intended start).
//!
//! Both count process CPU (`/proc/self/stat`) across the run. The load generator runs in the
//! same process and on the same tokio runtime as what it measures, so the CPU figures
//! include the client's own work; a ratio against a baseline measured the same way cancels
//! most of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use super::proc_stats;

/// The future of one call.
pub type CallFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// What a run sends: one call per invocation; the argument is unique within the process
/// (for request ids and customer addresses).
pub type Target = Arc<dyn Fn(u64) -> CallFuture + Send + Sync>;

/// A call that takes longer than this counts as an error (its latency is still recorded).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Highest latency the histograms hold (longer ones are recorded as this), in µs.
const MAX_LATENCY_US: u64 = 120_000_000;

static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// How a run offered its load.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `in_flight` workers, each sending its next call when the previous one is answered.
    Closed { in_flight: usize },
    /// One call every `1/rate` s from a pacing thread, whatever the server does.
    Open { rate: f64 },
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Run {
    /// How the load was offered.
    pub mode: Mode,
    /// Calls answered with success.
    pub ok: u64,
    /// Calls that failed or timed out.
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// From the first call sent to the last one answered.
    pub elapsed: Duration,
    /// Process CPU (user + system) over the run.
    pub cpu: Duration,
    /// Latency in µs: from the send (closed loop) or from the intended start (open loop).
    pub latency: Histogram<u64>,
    /// Open loop only: latency from the moment the call was actually sent, in µs. The
    /// difference from `latency` is time spent waiting to be sent (pacing, in-flight cap).
    pub service: Option<Histogram<u64>>,
}

impl Run {
    /// Successful calls per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Process CPU per call (successful or not), in µs.
    pub fn cpu_per_call_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / (self.ok + self.errors).max(1) as f64
    }

    /// The latency at quantile `q` (0..=1), in µs.
    pub fn latency_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64
    }

    /// The run as JSON for the summary.
    pub fn to_json(&self, label: &str) -> serde_json::Value {
        let quantiles = |h: &Histogram<u64>| {
            serde_json::json!({
                "p50": h.value_at_quantile(0.5),
                "p90": h.value_at_quantile(0.9),
                "p99": h.value_at_quantile(0.99),
                "p999": h.value_at_quantile(0.999),
                "max": h.max(),
            })
        };
        serde_json::json!({
            "label": label,
            "mode": self.mode,
            "ok": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput_per_s": self.throughput(),
            "cpu_s": self.cpu.as_secs_f64(),
            "cpu_per_call_us": self.cpu_per_call_us(),
            "latency_us": quantiles(&self.latency),
            "service_latency_us": self.service.as_ref().map(quantiles),
        })
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

async fn one_call(target: &Target) -> Result<(), String> {
    let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
    match tokio::time::timeout(CALL_TIMEOUT, target(id)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!("{err:#}")),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

#[derive(Default)]
struct Errors {
    count: u64,
    first: Option<String>,
}

impl Errors {
    fn add(&mut self, err: String) {
        self.count += 1;
        self.first.get_or_insert(err);
    }
}

/// Sends `calls` calls (at most `in_flight` at a time) without recording anything, so that
/// connections, caches and the allocator are warm before a measured run.
pub async fn warm_up(target: &Target, in_flight: usize, calls: u64) -> anyhow::Result<()> {
    let run = closed_loop(target, in_flight, calls, Duration::from_secs(30)).await;
    match run.first_error {
        Some(err) if run.ok == 0 => anyhow::bail!("every warm-up call failed: {err}"),
        _ => Ok(()),
    }
}

/// Closed loop: `in_flight` workers send calls back to back until `max_calls` were sent or
/// `max_time` has passed; measures the maximum throughput at that concurrency.
pub async fn closed_loop(
    target: &Target,
    in_flight: usize,
    max_calls: u64,
    max_time: Duration,
) -> Run {
    let issued = Arc::new(AtomicU64::new(0));
    let cpu_before = proc_stats::cpu_time();
    let start = Instant::now();
    let deadline = start + max_time;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let target = target.clone();
        let issued = issued.clone();
        workers.spawn(async move {
            let mut latency = histogram();
            let mut errors = Errors::default();
            let mut ok = 0;
            while issued.fetch_add(1, Ordering::Relaxed) < max_calls && Instant::now() < deadline {
                let sent = Instant::now();
                let result = one_call(&target).await;
                latency.saturating_record(micros(sent.elapsed()));
                match result {
                    Ok(()) => ok += 1,
                    Err(err) => errors.add(err),
                }
            }
            (ok, errors, latency)
        });
    }
    let mut run = Run {
        mode: Mode::Closed { in_flight },
        ok: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        cpu: Duration::ZERO,
        latency: histogram(),
        service: None,
    };
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok((ok, errors, latency)) => {
                run.ok += ok;
                run.errors += errors.count;
                if run.first_error.is_none() {
                    run.first_error = errors.first;
                }
                run.latency.add(latency).expect("same histogram bounds");
            }
            Err(join) => {
                run.errors += 1;
                run.first_error
                    .get_or_insert(format!("worker panicked: {join}"));
            }
        }
    }
    run.elapsed = start.elapsed();
    run.cpu = proc_stats::cpu_time().saturating_sub(cpu_before);
    run
}

/// Open loop: one call every `1/rate` seconds for `duration`, each sent at its intended
/// time by a pacing thread whatever happened to the earlier ones, with at most
/// `max_in_flight` outstanding (a call waiting for a slot still counts its wait).
///
/// Latency is measured from each call's *intended* start, so a server that stalls shows
/// the whole stall in the tail instead of slowing the generator down (no coordinated
/// omission). The pacing thread sleeps with `nanosleep`, so calls leave within tens of
/// µs of their intended time, not at tokio's 1 ms timer ticks.
pub async fn open_loop(
    target: &Target,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> Run {
    let rate = rate.max(1.0);
    let count = ((rate * duration.as_secs_f64()).round() as u64).max(1);
    let latency = Arc::new(Mutex::new(histogram()));
    let service = Arc::new(Mutex::new(histogram()));
    let errors = Arc::new(Mutex::new(Errors::default()));
    let ok = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    // Every call holds a sender; `recv` returns `None` once the pacer and every call are done.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let runtime = tokio::runtime::Handle::current();

    let cpu_before = proc_stats::cpu_time();
    let start = Instant::now() + Duration::from_millis(2);
    let pacer = {
        let (target, latency, service, errors, ok) = (
            target.clone(),
            latency.clone(),
            service.clone(),
            errors.clone(),
            ok.clone(),
        );
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || {
                for i in 0..count {
                    let intended = start + Duration::from_secs_f64(i as f64 / rate);
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    let (target, latency, service, errors, ok, slots, done) = (
                        target.clone(),
                        latency.clone(),
                        service.clone(),
                        errors.clone(),
                        ok.clone(),
                        slots.clone(),
                        done_tx.clone(),
                    );
                    runtime.spawn(async move {
                        let _slot = slots.acquire_owned().await;
                        let sent = Instant::now();
                        let result = one_call(&target).await;
                        let answered = Instant::now();
                        latency
                            .lock()
                            .expect("histogram lock")
                            .saturating_record(micros(answered - intended));
                        service
                            .lock()
                            .expect("histogram lock")
                            .saturating_record(micros(answered - sent));
                        match result {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(err) => errors.lock().expect("errors lock").add(err),
                        }
                        drop(done);
                    });
                }
            })
            .expect("spawning the pacing thread")
    };
    let _ = done_rx.recv().await;
    let elapsed = start.elapsed();
    let cpu = proc_stats::cpu_time().saturating_sub(cpu_before);
    let _ = pacer.join();
    let errors = std::mem::take(&mut *errors.lock().expect("errors lock"));
    let latency = std::mem::replace(&mut *latency.lock().expect("histogram lock"), histogram());
    let service = std::mem::replace(&mut *service.lock().expect("histogram lock"), histogram());
    Run {
        mode: Mode::Open { rate },
        ok: ok.load(Ordering::Relaxed),
        errors: errors.count,
        first_error: errors.first,
        elapsed,
        cpu,
        latency,
        service: Some(service),
    }
}
