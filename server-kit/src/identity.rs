//! The verified caller identity that the gateway forwards to the services.
//!
//! The gateway authenticates the caller, then adds three headers to the request it
//! forwards: the identity as base64url JSON, a unix timestamp, and an HMAC-SHA256 over
//! `"v1\n{path}\n{ts}\n{identity}"` with a secret shared by the gateway and the services.
//! Services trust the identity only when the signature checks, so a client cannot forge
//! it; the signature covers the gRPC path, so it cannot be replayed on another method,
//! and the timestamp bounds how long a captured signature stays usable.

use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::{Either, Ready, ready};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tonic::Status;

/// Header carrying the base64url (no padding) JSON of the [`Identity`].
pub const IDENTITY_HEADER: &str = "x-switchboard-identity";
/// Header carrying the signing time in unix seconds.
pub const IDENTITY_TS_HEADER: &str = "x-switchboard-identity-ts";
/// Header carrying the base64url (no padding) HMAC-SHA256 signature.
pub const IDENTITY_SIG_HEADER: &str = "x-switchboard-identity-sig";
/// All identity headers, so that the gateway can strip any a client sent.
pub const IDENTITY_HEADERS: [&str; 3] = [IDENTITY_HEADER, IDENTITY_TS_HEADER, IDENTITY_SIG_HEADER];

/// How far a signature's timestamp may be from the verifier's clock, in seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Who is calling, as verified by the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The caller's tenant; empty for services acting on their own behalf.
    pub tenant_id: String,
    /// The tenant's ancestors, parent first, then its parent, and so on.
    pub tenant_ancestry: Vec<String>,
    /// User id, API key id or service name.
    pub principal_id: String,
    /// What kind of principal `principal_id` names.
    pub principal_kind: PrincipalKind,
    /// A name fit for audit logs and transcripts.
    pub display_name: String,
    /// The roles granted to the principal in `tenant_id`.
    pub roles: Vec<Role>,
    /// Supervisor actions the tenant has enabled (e.g. `monitor`, `force_close`).
    pub enabled_supervisor_actions: Vec<String>,
    /// The tenant's default IANA time zone for reports; empty for UTC.
    #[serde(default)]
    pub time_zone: String,
    /// The tenant's reopen window in seconds: a customer who writes again within it after a
    /// close reopens the conversation.
    #[serde(default)]
    pub reopen_window_secs: i64,
}

/// What kind of principal an [`Identity`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person signed in with a bearer token.
    User,
    /// A program using an API key.
    ApiKey,
    /// A Switchboard service calling another one.
    Service,
}

/// A role granted to a principal within a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Handles conversations.
    Agent,
    /// Watches and steers agents and conversations.
    Supervisor,
    /// Configures the tenant.
    Administrator,
    /// Reads reports.
    Analyst,
    /// An automated participant (channel connector, chatbot).
    Bot,
    /// A Switchboard service.
    Service,
}

impl Identity {
    /// Whether the identity holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the identity holds at least one of `roles`.
    pub fn has_any_role(&self, roles: &[Role]) -> bool {
        roles.iter().any(|role| self.has_role(*role))
    }

    /// The identity a service uses for its own calls to other services.
    pub fn service(name: &str) -> Identity {
        Identity {
            tenant_id: String::new(),
            tenant_ancestry: Vec::new(),
            principal_id: name.to_owned(),
            principal_kind: PrincipalKind::Service,
            display_name: name.to_owned(),
            roles: vec![Role::Service],
            enabled_supervisor_actions: Vec::new(),
            time_zone: String::new(),
            reopen_window_secs: 0,
        }
    }
}

/// The identity secret is too short to be safe.
#[derive(Debug, thiserror::Error)]
#[error("identity secret must be at least {MIN_SECRET_LEN} bytes")]
pub struct IdentityKeyError;

const MIN_SECRET_LEN: usize = 16;

/// The shared secret that signs and verifies identities.
#[derive(Clone)]
pub struct IdentityKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKey(..)")
    }
}

impl IdentityKey {
    /// Builds a key from the shared secret; refuses secrets shorter than 16 bytes.
    pub fn new(secret: &str) -> Result<IdentityKey, IdentityKeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(IdentityKeyError);
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        Ok(IdentityKey { mac })
    }

    /// A 32-byte key for another purpose, derived from the shared secret and `label`, so
    /// that the secret itself is used for nothing but signing.
    pub(crate) fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(b"derive\n");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    /// Signs `identity` for a call to the gRPC method `path`, replacing any identity
    /// headers already in `headers`.
    pub fn sign(&self, path: &str, identity: &Identity, headers: &mut HeaderMap) {
        self.sign_at(path, identity, headers, unix_now());
    }

    /// Checks the identity headers for a call to `path` and returns the identity.
    ///
    /// Fails with UNAUTHENTICATED when the headers are missing or malformed, the
    /// signature does not match, or the timestamp is more than five minutes off.
    pub fn verify(&self, path: &str, headers: &HeaderMap) -> Result<Identity, Status> {
        self.verify_at(path, headers, unix_now())
    }

    fn sign_at(&self, path: &str, identity: &Identity, headers: &mut HeaderMap, ts: i64) {
        for name in IDENTITY_HEADERS {
            headers.remove(name);
        }
        let json = serde_json::to_vec(identity).expect("an identity always serializes");
        let encoded = URL_SAFE_NO_PAD.encode(json);
        let ts = ts.to_string();
        let signature =
            URL_SAFE_NO_PAD.encode(self.mac(path, &ts, &encoded).finalize().into_bytes());
        headers.insert(IDENTITY_HEADER, header_value(encoded));
        headers.insert(IDENTITY_TS_HEADER, header_value(ts));
        headers.insert(IDENTITY_SIG_HEADER, header_value(signature));
    }

    fn verify_at(&self, path: &str, headers: &HeaderMap, now: i64) -> Result<Identity, Status> {
        let encoded = headers.get(IDENTITY_HEADER);
        let ts = headers.get(IDENTITY_TS_HEADER);
        let signature = headers.get(IDENTITY_SIG_HEADER);
        let (Some(encoded), Some(ts), Some(signature)) = (encoded, ts, signature) else {
            return Err(Status::unauthenticated("missing gateway identity"));
        };
        let invalid = || Status::unauthenticated("invalid gateway identity signature");
        let encoded = encoded.to_str().map_err(|_| invalid())?;
        let ts = ts.to_str().map_err(|_| invalid())?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature.as_bytes())
            .map_err(|_| invalid())?;
        self.mac(path, ts, encoded)
            .verify_slice(&signature)
            .map_err(|_| invalid())?;
        let signed_at: i64 = ts.parse().map_err(|_| invalid())?;
        if (now - signed_at).abs() > MAX_CLOCK_SKEW_SECS {
            return Err(Status::unauthenticated("expired gateway identity"));
        }
        let json = URL_SAFE_NO_PAD
            .decode(encoded.as_bytes())
            .map_err(|_| invalid())?;
        serde_json::from_slice(&json).map_err(|_| invalid())
    }

    fn mac(&self, path: &str, ts: &str, encoded: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(b"v1\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(ts.as_bytes());
        mac.update(b"\n");
        mac.update(encoded.as_bytes());
        mac
    }
}

fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("base64url and digits are valid header values")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

/// The caller identity of a request that passed [`IdentityLayer`].
///
/// UNAUTHENTICATED when absent, i.e. the server runs without identity verification.
pub fn identity_of<T>(req: &tonic::Request<T>) -> Result<Identity, Status> {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing gateway identity"))
}

/// Server-side layer that verifies the gateway signature on every call and stores the
/// [`Identity`] in the request extensions, where [`identity_of`] finds it.
///
/// Health checks and reflection are exempt so that probes and operators work without
/// going through the gateway. A refused call gets a trailers-only UNAUTHENTICATED
/// response and never reaches the service.
#[derive(Clone, Debug)]
pub struct IdentityLayer {
    key: IdentityKey,
}

impl IdentityLayer {
    /// A layer verifying with `key`.
    pub fn new(key: IdentityKey) -> IdentityLayer {
        IdentityLayer { key }
    }
}

impl<S> tower::Layer<S> for IdentityLayer {
    type Service = IdentityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdentityService {
            inner,
            key: self.key.clone(),
        }
    }
}

/// The service built by [`IdentityLayer`].
#[derive(Clone, Debug)]
pub struct IdentityService<S> {
    inner: S,
    key: IdentityKey,
}

fn is_exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for IdentityService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let path = req.uri().path();
        if !is_exempt(path) {
            match self.key.verify(path, req.headers()) {
                Ok(identity) => {
                    req.extensions_mut().insert(identity);
                }
                Err(status) => {
                    tracing::debug!(path, message = status.message(), "refused call");
                    return Either::Left(ready(Ok(status.into_http())));
                }
            }
        }
        Either::Right(self.inner.call(req))
    }
}

/// Client-side layer that signs every outgoing call with a fixed identity, for calls
/// from one service to another.
#[derive(Clone, Debug)]
pub struct SigningLayer {
    key: IdentityKey,
    identity: Identity,
}

impl SigningLayer {
    /// A layer signing `identity` with `key`.
    pub fn new(key: IdentityKey, identity: Identity) -> SigningLayer {
        SigningLayer { key, identity }
    }
}

impl<S> tower::Layer<S> for SigningLayer {
    type Service = SigningService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SigningService {
            inner,
            key: self.key.clone(),
            identity: self.identity.clone(),
        }
    }
}

/// The service built by [`SigningLayer`]; generated tonic clients accept it in place of a
/// `Channel`.
#[derive(Clone, Debug)]
pub struct SigningService<S> {
    inner: S,
    key: IdentityKey,
    identity: Identity,
}

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for SigningService<S>
where
    S: tower::Service<http::Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let path = req.uri().path().to_owned();
        self.key.sign(&path, &self.identity, req.headers_mut());
        self.inner.call(req)
    }
}

/// A lazily connecting channel that signs every call; build generated clients on it.
pub type SignedChannel = SigningService<tonic::transport::Channel>;

/// Builds a [`SignedChannel`] to `endpoint_url` (e.g. `http://127.0.0.1:50052`).
///
/// The channel connects on first use and reconnects by itself, so services can start
/// in any order.
pub fn signed_channel(
    endpoint_url: &str,
    key: IdentityKey,
    identity: Identity,
) -> Result<SignedChannel, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint_url.to_owned())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(tower::Layer::layer(
        &SigningLayer::new(key, identity),
        channel,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/switchboard.routing.v1.AgentService/SetPresence";

    fn key() -> IdentityKey {
        IdentityKey::new("0123456789abcdef-test-secret").unwrap()
    }

    fn agent() -> Identity {
        Identity {
            tenant_id: "3f0c6a9e-8d7b-4c1a-9e2f-5b6d7c8e9f01".to_owned(),
            tenant_ancestry: vec!["parent".to_owned(), "root".to_owned()],
            principal_id: "user-1".to_owned(),
            principal_kind: PrincipalKind::User,
            display_name: "Ada Agent".to_owned(),
            roles: vec![Role::Agent, Role::Supervisor],
            enabled_supervisor_actions: vec!["monitor".to_owned()],
            time_zone: String::new(),
            reopen_window_secs: 0,
        }
    }

    fn signed(path: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        key().sign(path, &agent(), &mut headers);
        headers
    }

    #[test]
    fn round_trip_returns_the_identity() {
        let headers = signed(PATH);
        assert_eq!(key().verify(PATH, &headers).unwrap(), agent());
    }

    #[test]
    fn wire_format_is_base64url_json() {
        let headers = signed(PATH);
        let encoded = headers.get(IDENTITY_HEADER).unwrap().to_str().unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
        assert_eq!(json["principal_kind"], "user");
        assert_eq!(json["roles"], serde_json::json!(["agent", "supervisor"]));
        let ts: i64 = headers[IDENTITY_TS_HEADER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((ts - unix_now()).abs() <= 1);
    }

    #[test]
    fn signing_replaces_client_sent_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(IDENTITY_HEADER, HeaderValue::from_static("forged"));
        headers.append(IDENTITY_HEADER, HeaderValue::from_static("forged-too"));
        key().sign(PATH, &agent(), &mut headers);
        assert_eq!(headers.get_all(IDENTITY_HEADER).iter().count(), 1);
        assert_eq!(key().verify(PATH, &headers).unwrap(), agent());
    }

    #[test]
    fn tampered_identity_is_rejected() {
        let mut headers = signed(PATH);
        let mut forged = agent();
        forged.roles.push(Role::Administrator);
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        headers.insert(IDENTITY_HEADER, HeaderValue::try_from(forged).unwrap());
        let err = key().verify(PATH, &headers).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn tampered_timestamp_is_rejected() {
        let mut headers = signed(PATH);
        let later = (unix_now() + 1).to_string();
        headers.insert(IDENTITY_TS_HEADER, HeaderValue::try_from(later).unwrap());
        let err = key().verify(PATH, &headers).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn signature_does_not_transfer_to_another_method() {
        let headers = signed(PATH);
        let err = key()
            .verify("/switchboard.routing.v1.QueueService/DeleteQueue", &headers)
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn other_secret_is_rejected() {
        let headers = signed(PATH);
        let other = IdentityKey::new("another-secret-of-enough-length").unwrap();
        assert_eq!(
            other.verify(PATH, &headers).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_rejected() {
        let now = unix_now();
        for skew in [-301, 301] {
            let mut headers = HeaderMap::new();
            key().sign_at(PATH, &agent(), &mut headers, now + skew);
            let err = key().verify_at(PATH, &headers, now).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "skew {skew}");
        }
        for skew in [-299, 299] {
            let mut headers = HeaderMap::new();
            key().sign_at(PATH, &agent(), &mut headers, now + skew);
            assert!(key().verify_at(PATH, &headers, now).is_ok(), "skew {skew}");
        }
    }

    #[test]
    fn missing_headers_are_rejected() {
        let err = key().verify(PATH, &HeaderMap::new()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(err.message(), "missing gateway identity");
        for name in IDENTITY_HEADERS {
            let mut headers = signed(PATH);
            headers.remove(name);
            let err = key().verify(PATH, &headers).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "without {name}");
        }
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(IdentityKey::new("too-short").is_err());
        assert!(IdentityKey::new("exactly-16-bytes").is_ok());
    }

    #[test]
    fn roles_and_service_identity() {
        let id = agent();
        assert!(id.has_role(Role::Agent));
        assert!(!id.has_role(Role::Administrator));
        assert!(id.has_any_role(&[Role::Administrator, Role::Supervisor]));
        assert!(!id.has_any_role(&[Role::Administrator, Role::Analyst]));
        let svc = Identity::service("conversation-svc");
        assert!(svc.tenant_id.is_empty());
        assert_eq!(svc.principal_kind, PrincipalKind::Service);
        assert_eq!(svc.roles, vec![Role::Service]);
    }

    #[test]
    fn identity_of_reads_extensions() {
        let mut req = tonic::Request::new(());
        assert_eq!(
            identity_of(&req).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        req.extensions_mut().insert(agent());
        assert_eq!(identity_of(&req).unwrap(), agent());
    }
}
