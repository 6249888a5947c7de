//! A real server on a pre-bound loopback listener, called by real tonic clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use futures::StreamExt;
use http::uri::PathAndQuery;
use switchboard_server_kit::{
    Identity, IdentityKey, Metrics, ServeError, ServeOptions, ShutdownSignal, identity_of, serve,
    signed_channel,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const PROBE: &str = "switchboard.test.v1.Probe";
const SECRET: &str = "test-secret-of-sufficient-length";

async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = switchboard_server_kit::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A gRPC response with only trailers: `code` and, when given, the caller's principal
/// echoed in a header.
fn trailers_only(code: tonic::Code, principal: Option<String>) -> Response {
    let mut response: Response = tonic::Status::new(code, "").into_http();
    if let Some(principal) = principal {
        response
            .headers_mut()
            .insert("x-principal", principal.parse().unwrap());
    }
    response
}

/// Test routes under `switchboard.test.v1.Probe`: `Whoami` echoes the verified caller,
/// `Slow` ends 300 ms after the shutdown token fires, `Hang` never ends, `Stream` ends when
/// the shutdown token fires. `Slow`, `Hang` and `Stream` add a permit to `arrived` when
/// their handler starts, so a test knows the call is in flight.
fn probe_routes(token: CancellationToken, arrived: Arc<Semaphore>) -> Routes {
    let (slow_arrived, hang_arrived, stream_arrived) = (arrived.clone(), arrived.clone(), arrived);
    let slow_token = token.clone();
    let router = axum::Router::new()
        .route(
            "/switchboard.test.v1.Probe/Whoami",
            axum::routing::post(|req: Request| async move {
                let (parts, body) = req.into_parts();
                let req = tonic::Request::from_http(http::Request::from_parts(parts, body));
                match identity_of(&req) {
                    Ok(identity) => trailers_only(tonic::Code::Ok, Some(identity.principal_id)),
                    Err(status) => trailers_only(status.code(), None),
                }
            }),
        )
        .route(
            "/switchboard.test.v1.Probe/Slow",
            axum::routing::post(move || async move {
                slow_arrived.add_permits(1);
                slow_token.cancelled().await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                trailers_only(tonic::Code::Ok, None)
            }),
        )
        .route(
            "/switchboard.test.v1.Probe/Hang",
            axum::routing::post(move || async move {
                hang_arrived.add_permits(1);
                tokio::time::sleep(Duration::from_secs(600)).await;
                trailers_only(tonic::Code::Ok, None)
            }),
        )
        .route(
            "/switchboard.test.v1.Probe/Stream",
            axum::routing::post(move || async move {
                stream_arrived.add_permits(1);
                token.cancelled().await;
                trailers_only(tonic::Code::Unavailable, None)
            }),
        )
        .fallback(|| async { trailers_only(tonic::Code::Unimplemented, None) });
    Routes::from(router)
}

/// Calls a probe method as a server-streaming call with empty messages.
async fn call_probe<T>(
    channel: T,
    method: &str,
) -> Result<tonic::metadata::MetadataMap, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|err| tonic::Status::unavailable(err.into().to_string()))?;
    let path = PathAndQuery::try_from(format!("/{PROBE}/{method}")).unwrap();
    let response = grpc
        .server_streaming(
            tonic::Request::new(()),
            path,
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await?;
    let metadata = response.metadata().clone();
    let mut stream = response.into_inner();
    while let Some(message) = stream.next().await {
        message?;
    }
    Ok(metadata)
}

struct Running {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: ShutdownSignal,
    task: JoinHandle<Result<(), ServeError>>,
    /// One permit per probe call whose handler has started.
    arrived: Arc<Semaphore>,
}

impl Running {
    /// Waits until `calls` probe calls are being handled.
    async fn in_flight(&self, calls: u32) {
        tokio::time::timeout(Duration::from_secs(10), self.arrived.acquire_many(calls))
            .await
            .expect("the calls reach their handlers")
            .unwrap()
            .forget();
    }
}

async fn start(identity: Option<IdentityKey>, with_metrics: bool, drain: Duration) -> Running {
    let (listener, addr) = loopback().await;
    let (metrics, metrics_addr) = if with_metrics {
        let (metrics_listener, metrics_addr) = loopback().await;
        (
            Some((Metrics::new("test-svc"), metrics_listener)),
            Some(metrics_addr),
        )
    } else {
        (None, None)
    };
    let shutdown = ShutdownSignal::new();
    let options = ServeOptions {
        name: "test-svc",
        health_services: vec![PROBE],
        descriptor_sets: Vec::new(),
        identity,
        metrics,
        drain_timeout: drain,
        tls: None,
    };
    let arrived = Arc::new(Semaphore::new(0));
    let routes = probe_routes(shutdown.token(), arrived.clone());
    let task = tokio::spawn(serve(options, routes, listener, shutdown.clone()));
    Running {
        addr,
        metrics_addr,
        shutdown,
        task,
        arrived,
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn check(client: &mut HealthClient<Channel>, service: &str) -> Result<i32, tonic::Status> {
    client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|response| response.into_inner().status)
}

async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the series of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .map(|value| value.parse().unwrap())
}

#[tokio::test]
async fn metrics_count_calls_by_code() {
    let key = IdentityKey::new(SECRET).unwrap();
    let server = start(Some(key), true, Duration::from_secs(5)).await;
    let mut health = HealthClient::new(channel(server.addr).await);

    assert_eq!(
        check(&mut health, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        check(&mut health, PROBE).await.unwrap(),
        ServingStatus::Serving as i32
    );
    let unknown = check(&mut health, "no.such.Service").await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    // Refused by the identity layer: no signature.
    let refused = call_probe(channel(server.addr).await, "Whoami")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(refused.message(), "missing gateway identity");
    // Not a method of this server (signed, so that only the routing refuses it).
    let signed = signed_channel(
        &format!("http://{}", server.addr),
        IdentityKey::new(SECRET).unwrap(),
        Identity::service("test"),
    )
    .unwrap();
    let missing = call_probe(signed, "NoSuchMethod").await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unimplemented);

    let text = scrape(server.metrics_addr.unwrap()).await;
    let total = "grpc_server_requests_total";
    let check_labels = [r#"service="grpc.health.v1.Health""#, r#"method="Check""#];
    assert_eq!(
        sample(
            text.as_str(),
            total,
            &[check_labels[0], check_labels[1], r#"code="OK""#]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            total,
            &[check_labels[0], check_labels[1], r#"code="NOT_FOUND""#]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            total,
            &[
                r#"service="switchboard.test.v1.Probe""#,
                r#"method="Whoami""#,
                r#"code="UNAUTHENTICATED""#
            ]
        ),
        Some(1.0),
        "{text}"
    );
    // Unknown methods do not get series of their own.
    assert_eq!(
        sample(
            &text,
            total,
            &[
                r#"service="unknown""#,
                r#"method="unknown""#,
                r#"code="UNIMPLEMENTED""#
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("NoSuchMethod"), "{text}");
    assert!(text.contains(r#"app="test-svc""#), "{text}");
    assert_eq!(
        sample(
            &text,
            "grpc_server_request_duration_seconds_count",
            &check_labels
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "grpc_server_requests_in_flight", &check_labels),
        Some(0.0),
        "{text}"
    );

    server.shutdown.trigger();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn signed_channel_passes_the_identity_check() {
    let key = IdentityKey::new(SECRET).unwrap();
    let server = start(Some(key.clone()), false, Duration::from_secs(5)).await;
    let url = format!("http://{}", server.addr);

    let signed = signed_channel(&url, key, Identity::service("conversation-svc")).unwrap();
    let metadata = call_probe(signed.clone(), "Whoami").await.unwrap();
    assert_eq!(metadata.get("x-principal").unwrap(), "conversation-svc");

    // A generated client accepts the signed channel in place of a plain one.
    let mut health = HealthClient::new(signed);
    let status = health
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, ServingStatus::Serving as i32);

    let wrong_key = IdentityKey::new("some-other-secret-value").unwrap();
    let forged = signed_channel(&url, wrong_key, Identity::service("conversation-svc")).unwrap();
    let err = call_probe(forged, "Whoami").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(err.message(), "invalid gateway identity signature");

    // Health and reflection stay open to probes and operators without a signature.
    let mut plain = HealthClient::new(channel(server.addr).await);
    assert!(check(&mut plain, "").await.is_ok());

    server.shutdown.trigger();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn without_identity_key_calls_carry_no_identity() {
    let server = start(None, false, Duration::from_secs(5)).await;
    let err = call_probe(channel(server.addr).await, "Whoami")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(err.message(), "");
    server.shutdown.trigger();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn reflection_lists_health_in_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};

    let server = start(None, false, Duration::from_secs(5)).await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(channel(server.addr).await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel(server.addr).await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(
        format!("{response:?}").contains("grpc.health.v1.Health"),
        "{response:?}"
    );

    server.shutdown.trigger();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn graceful_shutdown_reports_not_serving_and_drains() {
    let server = start(None, false, Duration::from_secs(10)).await;
    let conn = channel(server.addr).await;
    let mut health = HealthClient::new(conn.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: PROBE.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let first: HealthCheckResponse = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let token = server.shutdown.token();
    let slow = tokio::spawn(call_probe(conn.clone(), "Slow"));
    let stream = tokio::spawn(call_probe(conn.clone(), "Stream"));
    server.in_flight(2).await;
    assert!(!token.is_cancelled());

    let started = Instant::now();
    server.shutdown.trigger();
    let next = watch.next().await.unwrap().unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    drop(watch);

    // The in-flight unary call finishes normally; the long stream is ended by the token.
    slow.await.unwrap().unwrap();
    let ended = stream.await.unwrap().unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Unavailable);
    assert!(token.is_cancelled());

    server.task.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained without hitting the timeout"
    );
    // The port no longer accepts calls.
    assert!(
        Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn drain_gives_up_after_the_timeout() {
    let server = start(None, false, Duration::from_millis(300)).await;
    let conn = channel(server.addr).await;
    let hanging = tokio::spawn(call_probe(conn, "Hang"));
    server.in_flight(1).await;

    let started = Instant::now();
    server.shutdown.trigger();
    server.task.await.unwrap().unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    hanging.abort();
}

#[tokio::test]
async fn shutdown_from_a_future() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = ShutdownSignal::from_future(async move {
        let _ = rx.await;
    });
    let token = shutdown.token();
    let (listener, addr) = loopback().await;
    let task = tokio::spawn(serve(
        ServeOptions::new("test-svc"),
        Routes::default(),
        listener,
        shutdown,
    ));
    // Serving, and still serving after answering: only the future stops it.
    let mut health = HealthClient::new(channel(addr).await);
    assert_eq!(
        check(&mut health, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert!(!task.is_finished());
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(token.is_cancelled());
}

/// With TLS configured, a client that trusts the certificate is served and a plaintext
/// client is not.
#[tokio::test]
async fn serves_over_tls_when_configured() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tls");
    let cert = std::fs::read(dir.join("server.crt")).unwrap();
    let key = std::fs::read(dir.join("server.key")).unwrap();
    let (listener, addr) = loopback().await;
    let shutdown = ShutdownSignal::new();
    let options = ServeOptions {
        health_services: vec![PROBE],
        tls: Some(
            tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(&cert, &key)),
        ),
        ..ServeOptions::new("tls-svc")
    };
    let task = tokio::spawn(serve(
        options,
        probe_routes(shutdown.token(), Arc::new(Semaphore::new(0))),
        listener,
        shutdown.clone(),
    ));

    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cert))
        .domain_name("localhost");
    let secure = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a client trusting the certificate connects");
    let status = check(&mut HealthClient::new(secure), PROBE).await.unwrap();
    assert_eq!(status, ServingStatus::Serving as i32);

    let plain = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => check(&mut HealthClient::new(channel), PROBE).await.is_err(),
    };
    assert!(
        refused,
        "a plaintext client must not be served by a TLS server"
    );

    shutdown.trigger();
    task.await.unwrap().unwrap();
}

/// An open health watcher is told NOT_SERVING, then its stream ends: it does not hold the
/// shutdown for the drain timeout.
#[tokio::test]
async fn an_open_health_watch_does_not_hold_shutdown() {
    let server = start(None, false, Duration::from_secs(10)).await;
    let mut health = HealthClient::new(channel(server.addr).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: PROBE.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let started = Instant::now();
    server.shutdown.trigger();
    let next = watch.next().await.unwrap().unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the watch ends within 5 s of the shutdown");
    match end {
        None => {}
        Some(Err(status)) => assert_eq!(status.code(), tonic::Code::Unavailable),
        Some(Ok(more)) => panic!("the watch should end, got {more:?}"),
    }
    server.task.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?} with a watcher open",
        started.elapsed()
    );
}
