//! Prometheus metrics for gRPC servers, served on their own HTTP port.
//!
//! Every call is counted by service, method and final gRPC status code, timed until its
//! response body ends, and tracked while in flight, the usual RED view of a service.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
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
}

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
            registry.register(collector).expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            duration,
            in_flight,
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
        let (service, method) = split_path(path);
        self.in_flight
            .with_label_values(&[service, method])
            .inc();
        CallRecord {
            metrics: self.clone(),
            service: service.to_owned(),
            method: method.to_owned(),
            started: Instant::now(),
            done: false,
        }
    }
}

/// Splits `/pkg.Service/Method` into `("pkg.Service", "Method")`.
fn split_path(path: &str) -> (&str, &str) {
    match path.trim_start_matches('/').split_once('/') {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => (service, method),
        _ => ("unknown", "unknown"),
    }
}

/// One call in flight; records itself exactly once, when finished or dropped.
struct CallRecord {
    metrics: Metrics,
    service: String,
    method: String,
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
        let labels = [self.service.as_str(), self.method.as_str()];
        self.metrics
            .requests
            .with_label_values(&[labels[0], labels[1], code])
            .inc();
        self.metrics
            .duration
            .with_label_values(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics.in_flight.with_label_values(&labels).dec();
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
