//! The gateway's request path for everything but health and reflection: route by path,
//! authenticate, authorize, replace the identity headers with a signed identity, then
//! answer from the local DirectoryService or forward to the owning service, frame by frame,
//! without decoding the body.
//!
//! Order matters: the route is decided first so that an unknown or internal path is
//! refused before any credential check or database read; authentication precedes
//! authorization because roles come from the directory; the deadline covers both the
//! gateway's own work and the service's answer.

pub mod body;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use prost::Message as _;
use switchboard_proto::directory::v1::directory_service_server::DirectoryServiceServer;
use switchboard_proto::directory::v1::platform_service_server::PlatformServiceServer;
use switchboard_server_kit::{Identity, IdentityKey};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt as _;
use tracing::{debug, warn};

use crate::api::{DirectoryApi, PlatformApi};
use crate::auth::{API_KEY_HEADER, Authenticator, Caller, Operator};
use crate::config::Upstreams;
use crate::domain::authz;
use crate::domain::deadline::{format_grpc_timeout, parse_grpc_timeout};
use crate::domain::route::{Target, Upstream, target_of};
use crate::error::GatewayError;
use body::GuardedBody;

const GRPC_TIMEOUT: &str = "grpc-timeout";
/// Prefix of the identity headers; any client-sent header starting with it is dropped.
const IDENTITY_HEADER_PREFIX: &str = "x-switchboard-identity";

/// How much earlier than the client's deadline the gateway answers DEADLINE_EXCEEDED.
///
/// The HTTP/2 server underneath races the same deadline and answers CANCELLED when it
/// wins; answering a little earlier makes the client see the meaningful status.
const ANSWER_MARGIN: Duration = Duration::from_millis(2);

/// Everything the request path needs.
pub struct GatewayParts {
    /// Verifies credentials.
    pub authenticator: Authenticator,
    /// Signs identities for the services.
    pub identity_key: IdentityKey,
    /// The local DirectoryService.
    pub directory: DirectoryApi,
    /// The local PlatformService.
    pub platform: PlatformApi,
    /// Where the services are.
    pub upstreams: Upstreams,
    /// Deadline of unary calls whose client sets none.
    pub default_deadline: Option<Duration>,
    /// Cancelled when the gateway shuts down; ends proxied streams.
    pub shutdown: CancellationToken,
}

/// The fallback service of the gateway's router; cheap to clone.
#[derive(Clone)]
pub struct GatewayService {
    shared: Arc<Shared>,
}

struct Shared {
    authenticator: Authenticator,
    identity_key: IdentityKey,
    directory: DirectoryServiceServer<DirectoryApi>,
    platform: PlatformServiceServer<PlatformApi>,
    channels: HashMap<Upstream, Channel>,
    streaming: HashSet<String>,
    default_deadline: Option<Duration>,
    shutdown: CancellationToken,
}

impl GatewayService {
    /// Builds the service; fails on an upstream URL that is not a valid endpoint.
    pub fn new(parts: GatewayParts) -> Result<GatewayService, GatewayError> {
        let mut channels = HashMap::new();
        for (upstream, url) in [
            (Upstream::Routing, &parts.upstreams.routing_url),
            (Upstream::Conversation, &parts.upstreams.conversation_url),
            (Upstream::Reporting, &parts.upstreams.reporting_url),
        ] {
            channels.insert(upstream, upstream_channel(upstream, url)?);
        }
        Ok(GatewayService {
            shared: Arc::new(Shared {
                authenticator: parts.authenticator,
                identity_key: parts.identity_key,
                directory: DirectoryServiceServer::new(parts.directory),
                platform: PlatformServiceServer::new(parts.platform),
                channels,
                streaming: streaming_methods(),
                default_deadline: parts.default_deadline,
                shutdown: parts.shutdown,
            }),
        })
    }
}

/// A lazily connecting channel to `url`: the gateway starts whether or not the services
/// are up, and reconnects by itself.
fn upstream_channel(upstream: Upstream, url: &str) -> Result<Channel, GatewayError> {
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|err| {
        GatewayError::Config(format!(
            "upstream url of {} `{url}`: {err}",
            upstream.name()
        ))
    })?;
    Ok(endpoint
        // Without it every call waits on Nagle's algorithm.
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        // Detects a dead service under long-lived streams.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Full methods of the public API that stream, which the default deadline must not cut.
fn streaming_methods() -> HashSet<String> {
    let set = prost_types::FileDescriptorSet::decode(switchboard_proto::PUBLIC_FILE_DESCRIPTOR_SET)
        .expect("the public descriptor set is valid");
    let mut out = HashSet::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                if method.server_streaming() || method.client_streaming() {
                    out.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    out
}

impl tower::Service<Request<axum::body::Body>> for GatewayService {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<axum::body::Body>) -> Self::Future {
        // Taken before any await, as close as possible to when the server started its own
        // clock on the client's grpc-timeout.
        let received = Instant::now();
        let shared = self.shared.clone();
        Box::pin(async move { Ok(shared.handle(req, received).await) })
    }
}

/// Calls refused by the gateway: a trailers-only response.
fn refusal(err: GatewayError) -> Response<tonic::body::Body> {
    err.into_status().into_http()
}

impl Shared {
    async fn handle(
        &self,
        req: Request<axum::body::Body>,
        received: Instant,
    ) -> Response<tonic::body::Body> {
        let path = req.uri().path().to_owned();
        let target = target_of(&path);
        if target == Target::Unknown {
            debug!(path, "refused call to an unknown service");
            return refusal(GatewayError::UnknownService(path));
        }

        let streaming = self.streaming.contains(&path);
        let client_timeout = req
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let timeout = client_timeout.or(if streaming {
            None
        } else {
            self.default_deadline
        });
        let deadline = timeout.map(|t| received + t);
        let answer_by = deadline.map(|d| d.checked_sub(ANSWER_MARGIN).unwrap_or(d).max(received));

        let call = self.authorized_call(req, &path, target, deadline);
        let result = match answer_by {
            // The deadline is checked first: once it has passed, the answer is
            // DEADLINE_EXCEEDED whatever the service said meanwhile (often a timeout of
            // its own, under another code).
            Some(at) => tokio::select! {
                biased;
                () = tokio::time::sleep_until(at) => Err(GatewayError::DeadlineExceeded),
                result = call => result,
            },
            None => call.await,
        };
        let response = match result {
            Ok(response) => response,
            Err(err) => return refusal(err),
        };

        let source = match target {
            Target::Upstream(upstream) => upstream.name(),
            _ => "gateway",
        };
        let expects_trailers = !response.headers().contains_key("grpc-status");
        let shutdown = streaming.then(|| self.shutdown.clone().cancelled_owned());
        response.map(|body| {
            tonic::body::Body::new(GuardedBody::new(
                body,
                source,
                answer_by,
                shutdown,
                expects_trailers,
            ))
        })
    }

    async fn authorized_call(
        &self,
        mut req: Request<axum::body::Body>,
        path: &str,
        target: Target,
        deadline: Option<Instant>,
    ) -> Result<Response<tonic::body::Body>, GatewayError> {
        let identity = match self.authenticator.authenticate(req.headers()).await? {
            Caller::Tenant(identity) => identity,
            Caller::Operator(operator) => {
                return self.operator_call(req, path, target, operator).await;
            }
        };
        if let Err(denial) = authz::authorize(path, &identity) {
            debug!(path, principal_id = %identity.principal_id, ?denial, "refused call");
            return Err(GatewayError::Denied(denial));
        }
        prepare_headers(
            req.headers_mut(),
            path,
            &identity,
            &self.identity_key,
            deadline,
        );

        match target {
            Target::Directory => {
                req.extensions_mut().insert(identity);
                let response = self.directory.clone().oneshot(req).await;
                Ok(response.unwrap_or_else(|never| match never {}))
            }
            Target::Upstream(upstream) => self.forward(upstream, req).await,
            // authorize refused it already; kept so that no path leads a tenant there.
            Target::Platform => Err(GatewayError::Denied(authz::Denial::OperatorRequired {
                method: path.to_owned(),
            })),
            Target::Unknown => Err(GatewayError::UnknownService(path.to_owned())),
        }
    }

    /// A platform operator's call: answered by the local PlatformService or refused. Nothing
    /// is signed or forwarded for an operator, so no service ever sees one.
    async fn operator_call(
        &self,
        mut req: Request<axum::body::Body>,
        path: &str,
        target: Target,
        operator: Operator,
    ) -> Result<Response<tonic::body::Body>, GatewayError> {
        let refused = |denial: authz::Denial| {
            debug!(path, operator = %operator.name, ?denial, "refused call");
            GatewayError::Denied(denial)
        };
        authz::authorize_operator(path).map_err(refused)?;
        if target != Target::Platform {
            return Err(refused(authz::Denial::NotForOperators {
                method: path.to_owned(),
            }));
        }
        strip_caller_headers(req.headers_mut());
        req.extensions_mut().insert(operator);
        let response = self.platform.clone().oneshot(req).await;
        Ok(response.unwrap_or_else(|never| match never {}))
    }

    async fn forward(
        &self,
        upstream: Upstream,
        req: Request<axum::body::Body>,
    ) -> Result<Response<tonic::body::Body>, GatewayError> {
        let channel = self.channels[&upstream].clone();
        let unavailable =
            || GatewayError::Unavailable(format!("{} is unavailable", upstream.name()));
        match channel.oneshot(req.map(tonic::body::Body::new)).await {
            Ok(response) if response.status() == http::StatusCode::OK => Ok(response),
            Ok(response) => {
                warn!(upstream = upstream.name(), status = %response.status(), "upstream answered a non-gRPC status");
                Err(unavailable())
            }
            Err(err) if is_timeout(&err) => Err(GatewayError::DeadlineExceeded),
            Err(err) => {
                warn!(upstream = upstream.name(), error = %error_chain(&err), "upstream call failed");
                Err(unavailable())
            }
        }
    }
}

/// An error with its causes, e.g. `transport error: tcp connect error: Connection refused`.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether the channel gave up on the forwarded `grpc-timeout`.
fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Drops the caller's credentials (nothing past authentication needs them) and any identity
/// headers the caller sent.
fn strip_caller_headers(headers: &mut HeaderMap) {
    let forged: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(IDENTITY_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    headers.remove(http::header::AUTHORIZATION);
    headers.remove(API_KEY_HEADER);
}

/// Readies the headers for a service: drops the caller's credentials (services never need
/// them) and any identity headers the caller sent, states the remaining time, and adds the
/// identity signed for exactly this path.
fn prepare_headers(
    headers: &mut HeaderMap,
    path: &str,
    identity: &Identity,
    key: &IdentityKey,
    deadline: Option<Instant>,
) {
    strip_caller_headers(headers);
    headers.remove(GRPC_TIMEOUT);
    if let Some(deadline) = deadline {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Ok(value) = HeaderValue::try_from(format_grpc_timeout(remaining)) {
            headers.insert(GRPC_TIMEOUT, value);
        }
    }
    key.sign(path, identity, headers);
}

#[cfg(test)]
mod tests {
    use switchboard_server_kit::{PrincipalKind, Role};

    use super::*;

    #[test]
    fn streaming_methods_come_from_the_contract() {
        let streaming = streaming_methods();
        assert!(streaming.contains("/switchboard.routing.v1.AgentService/StreamOffers"));
        assert!(streaming.contains("/switchboard.reporting.v1.ReportingService/ExportReport"));
        assert!(!streaming.contains("/switchboard.routing.v1.AgentService/SetPresence"));
        assert!(!streaming.iter().any(|m| m.contains(".internal.")));
    }

    #[tokio::test]
    async fn headers_are_cleaned_and_signed() {
        let key = IdentityKey::new("0123456789abcdef0123").unwrap();
        let identity = Identity {
            tenant_id: "t".to_owned(),
            tenant_ancestry: vec![],
            principal_id: "u".to_owned(),
            principal_kind: PrincipalKind::User,
            display_name: "U".to_owned(),
            roles: vec![Role::Agent],
            enabled_supervisor_actions: vec![],
            time_zone: String::new(),
            reopen_window_secs: 0,
        };
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer x"));
        headers.insert("x-api-key", HeaderValue::from_static("sbk_x"));
        headers.insert("x-switchboard-identity", HeaderValue::from_static("forged"));
        headers.insert(
            "x-switchboard-identity-extra",
            HeaderValue::from_static("forged"),
        );
        headers.insert("grpc-timeout", HeaderValue::from_static("1H"));
        headers.insert("x-custom", HeaderValue::from_static("kept"));
        let path = "/switchboard.routing.v1.AgentService/SetPresence";
        let deadline = Instant::now() + Duration::from_secs(2);
        prepare_headers(&mut headers, path, &identity, &key, Some(deadline));
        assert!(headers.get("authorization").is_none());
        assert!(headers.get("x-api-key").is_none());
        assert!(headers.get("x-switchboard-identity-extra").is_none());
        assert_eq!(headers["x-custom"], "kept");
        let timeout = parse_grpc_timeout(headers["grpc-timeout"].to_str().unwrap()).unwrap();
        assert!(timeout <= Duration::from_secs(2) && timeout > Duration::from_secs(1));
        assert_eq!(key.verify(path, &headers).unwrap(), identity);
    }
}
