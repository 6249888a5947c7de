//! Prometheus metrics for gRPC servers, served on their own HTTP port.
//!
//! Every call is counted by service, method and final gRPC status code, timed until its
//! response body ends, and tracked while in flight, the usual RED view of a service.
//!
//! Label values come from the request path, which any client chooses. To keep the number
//! of series bounded, a method gets its own labels only once a call to it has ended with
//! a code other than UNIMPLEMENTED, and at most for [`MAX_LABELLED_METHODS`] methods;
//! everything else is labelled `unknown`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The metrics of one service process, in its own registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    labelled: Arc<RwLock<HashSet<String>>>,
}

/// How many distinct methods get their own labels; later ones are counted as `unknown`.
pub const MAX_LABELLED_METHODS: usize = 1000;

const UNKNOWN: &str = "unknown";

impl Metrics {
    /// Creates the gRPC server metrics; every series carries the label `app=service_name`.
    pub fn new(service_name: &str) -> Metrics {
        let labels = HashMap::from([("app".to_owned(), service_name.to_owned())]);
        let registry =
            Registry::new_custom(None, Some(labels)).expect("`app` is a valid label name");
        let requests = IntCounterVec::new(
            Opts::new(
                "grpc_server_requests_total",
                "gRPC calls completed, by final status code.",
            ),
            &["service", "method", "code"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_request_duration_seconds",
                "Time from receiving a gRPC call to the end of its response.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["service", "method"],
        )
        .expect("valid metric");
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "grpc_server_requests_in_flight",
                "gRPC calls started and not yet finished.",
            ),
            &["service", "method"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            duration,
            in_flight,
            labelled: Arc::default(),
        }
    }

    /// The registry, for a service to register its own domain metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The tower layer that records every call of a gRPC server.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer {
            metrics: Some(self.clone()),
        }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding does not fail on a valid registry");
        String::from_utf8(out).expect("text encoding is UTF-8")
    }

    fn start(&self, path: &str) -> CallRecord {
        let in_flight_labels = match self.labelled.read() {
            Ok(labelled) if labelled.contains(path) => split_path(path),
            _ => (UNKNOWN, UNKNOWN),
        };
        self.in_flight
            .with_label_values(&[in_flight_labels.0, in_flight_labels.1])
            .inc();
        CallRecord {
            metrics: self.clone(),
            path: path.to_owned(),
            in_flight_labels: (in_flight_labels.0.to_owned(), in_flight_labels.1.to_owned()),
            started: Instant::now(),
            done: false,
        }
    }

    /// Whether calls to `path` that ended with `code` may use their own labels.
    fn admit(&self, path: &str, code: &str) -> bool {
        if code == "UNIMPLEMENTED" || split_path(path) == (UNKNOWN, UNKNOWN) {
            return false;
        }
        if let Ok(labelled) = self.labelled.read()
            && labelled.contains(path)
        {
            return true;
        }
        match self.labelled.write() {
            Ok(mut labelled) if labelled.len() < MAX_LABELLED_METHODS => {
                labelled.insert(path.to_owned());
                true
            }
            Ok(labelled) => labelled.contains(path),
            Err(_) => false,
        }
    }
}

/// Splits `/pkg.Service/Method` into `("pkg.Service", "Method")`.
fn split_path(path: &str) -> (&str, &str) {
    match path.trim_start_matches('/').split_once('/') {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => (service, method),
        _ => (UNKNOWN, UNKNOWN),
    }
}

/// One call in flight; records itself exactly once, when finished or dropped.
struct CallRecord {
    metrics: Metrics,
    path: String,
    in_flight_labels: (String, String),
    started: Instant,
    done: bool,
}

impl CallRecord {
    fn finish(mut self, code: &str) {
        self.record(code);
    }

    fn record(&mut self, code: &str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (service, method) = if self.metrics.admit(&self.path, code) {
            split_path(&self.path)
        } else {
            (UNKNOWN, UNKNOWN)
        };
        self.metrics
            .requests
            .with_label_values(&[service, method, code])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[service, method])
            .observe(self.started.elapsed().as_secs_f64());
        let (service, method) = &self.in_flight_labels;
        self.metrics
            .in_flight
            .with_label_values(&[service.as_str(), method.as_str()])
            .dec();
    }
}

impl Drop for CallRecord {
    /// A call dropped before its status was seen was cancelled (client gone, deadline).
    fn drop(&mut self) {
        self.record("CANCELLED");
    }
}

/// The canonical name of a gRPC status code, as in `grpc-status` documentation.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn status_code_in(headers: &http::HeaderMap) -> Option<&'static str> {
    headers
        .get("grpc-status")
        .map(|value| code_name(tonic::Code::from_bytes(value.as_bytes())))
}

/// Tower layer recording gRPC server metrics; see [`Metrics::layer`].
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Option<Metrics>,
}

impl MetricsLayer {
    /// A layer that records nothing, for servers without metrics.
    pub(crate) fn disabled() -> MetricsLayer {
        MetricsLayer { metrics: None }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service built by [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Option<Metrics>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for MetricsService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let record = self.metrics.as_ref().map(|m| m.start(req.uri().path()));
        MetricsFuture {
            inner: self.inner.call(req),
            record,
        }
    }
}

pin_project! {
    /// Response future of [`MetricsService`].
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        record: Option<CallRecord>,
    }
}

impl<F, ResBody, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<MetricsBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut record = this.record.take();
        match result {
            Ok(response) => {
                // A trailers-only response (an error, or a refused call) has its status in
                // the headers; otherwise it comes in the trailers at the end of the body.
                if let Some(code) = status_code_in(response.headers())
                    && let Some(record) = record.take()
                {
                    record.finish(code);
                }
                Poll::Ready(Ok(response.map(|inner| MetricsBody { inner, record })))
            }
            Err(err) => {
                if let Some(record) = record {
                    record.finish("UNKNOWN");
                }
                Poll::Ready(Err(err))
            }
        }
    }
}

pin_project! {
    /// Response body of [`MetricsService`]: the inner body, watched for its trailers.
    pub struct MetricsBody<B> {
        #[pin]
        inner: B,
        record: Option<CallRecord>,
    }
}

impl<B: Body> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| status_code_in(trailers).unwrap_or("UNKNOWN")),
            Some(Err(_)) | None => Some("UNKNOWN"),
        };
        if let Some(code) = code
            && let Some(record) = this.record.take()
        {
            record.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The series every outbox reports: how long a committed call waited to be delivered,
/// and how many wait now. The lag is what a client sees as "acknowledged but not yet
/// applied"; operators alert on it.
#[derive(Clone, Debug)]
pub struct OutboxMetrics {
    lag: prometheus::Histogram,
    pending: prometheus::IntGauge,
}

/// Names and help texts of one outbox's series.
pub struct OutboxSeries {
    /// Histogram of delivery lag in seconds, e.g. `routing_outbox_delivery_lag_seconds`.
    pub lag_name: &'static str,
    /// What the lag is measured between.
    pub lag_help: &'static str,
    /// Gauge of rows waiting, e.g. `routing_outbox_pending_assignments`.
    pub pending_name: &'static str,
    /// What a waiting row is.
    pub pending_help: &'static str,
}

impl OutboxMetrics {
    /// Creates the series and registers them in `registry`.
    pub fn register(
        registry: &Registry,
        series: &OutboxSeries,
    ) -> prometheus::Result<OutboxMetrics> {
        let lag = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(series.lag_name, series.lag_help).buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ]),
        )?;
        let pending = prometheus::IntGauge::new(series.pending_name, series.pending_help)?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        Ok(OutboxMetrics { lag, pending })
    }

    /// Records one delivery of a row committed at `created` (µs), delivered at `now`.
    pub fn delivered(&self, created_micros: i64, now_micros: i64) {
        self.lag
            .observe(now_micros.saturating_sub(created_micros).max(0) as f64 / 1e6);
    }

    /// Sets how many rows wait now.
    pub fn set_pending(&self, pending: i64) {
        self.pending.set(pending);
    }
}

/// Serves `GET /metrics` in the Prometheus text format on `listener` until `shutdown`.
pub async fn serve_metrics(
    metrics: Metrics,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/switchboard.routing.v1.AgentService/SetPresence"),
            ("switchboard.routing.v1.AgentService", "SetPresence")
        );
        assert_eq!(split_path("/"), (UNKNOWN, UNKNOWN));
        assert_eq!(split_path("/only-service"), (UNKNOWN, UNKNOWN));
    }

    #[test]
    fn labelled_methods_are_bounded() {
        let metrics = Metrics::new("test-svc");
        assert!(!metrics.admit("/a.S/M", "UNIMPLEMENTED"));
        for i in 0..MAX_LABELLED_METHODS {
            assert!(metrics.admit(&format!("/a.S/M{i}"), "OK"));
        }
        assert!(!metrics.admit("/a.S/OneTooMany", "OK"));
        assert!(metrics.admit("/a.S/M0", "NOT_FOUND"));
    }

    /// The value of the series of `name` carrying all of `labels`.
    fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .find(|line| labels.iter().all(|label| line.contains(label)))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn dropped_call_counts_as_cancelled() {
        let metrics = Metrics::new("test-svc");
        drop(metrics.start("/a.S/M"));
        metrics.start("/a.S/M").finish("OK");
        let text = metrics.render();
        let total = "grpc_server_requests_total";
        let m = [r#"service="a.S""#, r#"method="M""#, r#"app="test-svc""#];
        let unknown = [r#"service="unknown""#, r#"method="unknown""#];
        assert_eq!(
            sample(&text, total, &[m[0], m[1], m[2], r#"code="CANCELLED""#]),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, total, &[m[0], m[1], r#"code="OK""#]),
            Some(1.0),
            "{text}"
        );
        // The first call started before the method had labels of its own.
        let in_flight = "grpc_server_requests_in_flight";
        assert_eq!(sample(&text, in_flight, &unknown), Some(0.0), "{text}");
        assert_eq!(sample(&text, in_flight, &m), Some(0.0), "{text}");
    }
}
