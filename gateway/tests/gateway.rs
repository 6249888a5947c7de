//! The gateway in-process, in front of a small reporting service that verifies the signed
//! identity (server-kit's `IdentityLayer`) and records what reaches it. routing-svc is
//! down (a closed port) and conversation-svc is a canary listener that only counts
//! connections, so a test can tell whether anything was forwarded there.

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _};
use gateway::error::UNAUTHENTICATED_MESSAGE;
use gateway::{Config, Directory};
use switchboard_proto::conversation::internal::v1 as conv_internal;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::directory::internal::v1 as dir_internal;
use switchboard_proto::directory::v1 as dir;
use switchboard_proto::reporting::v1 as rep;
use switchboard_proto::routing::internal::v1 as routing_internal;
use switchboard_proto::routing::v1 as routing;
use switchboard_server_kit::{
    Identity, IdentityKey, PrincipalKind, Role as KitRole, ServeOptions, ShutdownSignal,
    SignedChannel, identity_of, signed_channel,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

const IDENTITY_SECRET: &str = "gateway-test-identity-secret";
const JWT_SECRET: &str = "gateway-test-jwt-secret-0123456789";

// ---------------------------------------------------------------------------------------
// The reporting service behind the gateway.

/// One call that reached the upstream.
#[derive(Clone, Debug)]
struct SeenCall {
    method: String,
    identity: Identity,
    /// The metadata keys the service received.
    keys: Vec<String>,
}

/// What reached the upstream.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<SeenCall>>>);

impl Seen {
    fn record<T>(&self, method: &str, request: &Request<T>) -> Result<Identity, Status> {
        let identity = identity_of(request)?;
        let keys = request
            .metadata()
            .keys()
            .map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => k.as_str().to_owned(),
                tonic::metadata::KeyRef::Binary(k) => k.as_str().to_owned(),
            })
            .collect();
        self.0.lock().unwrap().push(SeenCall {
            method: method.to_owned(),
            identity: identity.clone(),
            keys,
        });
        Ok(identity)
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn last(&self) -> SeenCall {
        self.0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a call reached the upstream")
    }
}

struct FakeReporting {
    seen: Seen,
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<rep::ExportReportResponse, Status>> + Send>>;

fn chunk(text: &str, rows: i64) -> Result<rep::ExportReportResponse, Status> {
    Ok(rep::ExportReportResponse {
        update: Some(rep::export_report_response::Update::Chunk(
            rep::export_report_response::Chunk {
                csv_data: text.as_bytes().to_vec(),
                rows_so_far: rows,
            },
        )),
    })
}

/// The CSV bytes and row count of an export chunk.
fn chunk_of(message: rep::ExportReportResponse) -> (Vec<u8>, i64) {
    match message.update {
        Some(rep::export_report_response::Update::Chunk(chunk)) => {
            (chunk.csv_data, chunk.rows_so_far)
        }
        other => panic!("a chunk, got {other:?}"),
    }
}

#[tonic::async_trait]
impl rep::reporting_service_server::ReportingService for FakeReporting {
    async fn get_created_closed_report(
        &self,
        request: Request<rep::GetCreatedClosedReportRequest>,
    ) -> Result<Response<rep::GetCreatedClosedReportResponse>, Status> {
        self.seen.record("GetCreatedClosedReport", &request)?;
        Ok(Response::new(rep::GetCreatedClosedReportResponse::default()))
    }

    async fn get_reassignments_report(
        &self,
        _request: Request<rep::GetReassignmentsReportRequest>,
    ) -> Result<Response<rep::GetReassignmentsReportResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    /// Answers after ten seconds: for deadline tests.
    async fn get_close_time_report(
        &self,
        request: Request<rep::GetCloseTimeReportRequest>,
    ) -> Result<Response<rep::GetCloseTimeReportResponse>, Status> {
        self.seen.record("GetCloseTimeReport", &request)?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(Response::new(rep::GetCloseTimeReportResponse::default()))
    }

    async fn get_first_contact_resolution_report(
        &self,
        _request: Request<rep::GetFirstContactResolutionReportRequest>,
    ) -> Result<Response<rep::GetFirstContactResolutionReportResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_queue_metrics_report(
        &self,
        _request: Request<rep::GetQueueMetricsReportRequest>,
    ) -> Result<Response<rep::GetQueueMetricsReportResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_transfer_ledger(
        &self,
        _request: Request<rep::ListTransferLedgerRequest>,
    ) -> Result<Response<rep::ListTransferLedgerResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_dispositions_report(
        &self,
        _request: Request<rep::GetDispositionsReportRequest>,
    ) -> Result<Response<rep::GetDispositionsReportResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_agent_activity_report(
        &self,
        _request: Request<rep::GetAgentActivityReportRequest>,
    ) -> Result<Response<rep::GetAgentActivityReportResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_open_conversations_report(
        &self,
        _request: Request<rep::GetOpenConversationsReportRequest>,
    ) -> Result<Response<rep::GetOpenConversationsReportResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    type ExportReportStream = ExportStream;

    /// CREATED_CLOSED: three chunks, then the end. Any other kind: one chunk, then nothing
    /// until the connection goes away.
    async fn export_report(
        &self,
        request: Request<rep::ExportReportRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        self.seen.record("ExportReport", &request)?;
        let stream: ExportStream = if request.get_ref().kind
            == rep::ReportKind::CreatedClosed as i32
        {
            Box::pin(futures::stream::iter([
                chunk("a", 1),
                chunk("b", 2),
                chunk("c", 3),
            ]))
        } else {
            Box::pin(futures::stream::iter([chunk("first", 1)]).chain(futures::stream::pending()))
        };
        Ok(Response::new(stream))
    }
}

/// A TCP relay whose connections can be cut, to fail a stream midway.
struct Relay {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().unwrap().push(handle);
            }
        });
        Relay { addr, connections }
    }

    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// A listener that accepts connections, counts them, and never answers.
async fn canary() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (addr, count)
}

async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------
// The stack under test.

struct Stack {
    gateway: SocketAddr,
    /// The internal listener (DirectoryInternalService).
    internal: SocketAddr,
    directory: Directory,
    shutdown: ShutdownSignal,
    task: JoinHandle<anyhow::Result<()>>,
    seen: Seen,
    relay: Relay,
    canary_connections: Arc<AtomicUsize>,
    parent: Uuid,
    tenant: Uuid,
    admin: Uuid,
    analyst: Uuid,
    agent: Uuid,
    supervisor: Uuid,
    _upstream_shutdown: ShutdownSignal,
    _db: common::TestDirectory,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.trigger();
        self._upstream_shutdown.trigger();
    }
}

impl Stack {
    async fn start(db: common::TestDirectory) -> Stack {
        Stack::start_with(db, |_| {}).await
    }

    async fn start_with(db: common::TestDirectory, tweak: impl FnOnce(&mut Config)) -> Stack {
        let key = IdentityKey::new(IDENTITY_SECRET).unwrap();
        let seen = Seen::default();
        let upstream_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream_listener.local_addr().unwrap();
        let upstream_shutdown = ShutdownSignal::new();
        let routes = tonic::service::Routes::new(
            rep::reporting_service_server::ReportingServiceServer::new(FakeReporting {
                seen: seen.clone(),
            }),
        );
        let options = ServeOptions {
            identity: Some(key),
            ..ServeOptions::new("fake-reporting")
        };
        tokio::spawn(switchboard_server_kit::serve(
            options,
            routes,
            upstream_listener,
            upstream_shutdown.clone(),
        ));
        let relay = Relay::start(upstream_addr).await;
        let (canary_addr, canary_connections) = canary().await;

        let directory = db.directory.clone();
        let (parent, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        directory
            .ensure_tenant(parent, None, "Holding")
            .await
            .unwrap();
        directory
            .ensure_tenant(tenant, Some(parent), "Acme")
            .await
            .unwrap();
        directory
            .set_enabled_supervisor_actions(tenant, &[dir::SupervisorAction::Monitor])
            .await
            .unwrap();
        let user = |name: &'static str, roles: &'static [dir::Role]| {
            let id = Uuid::new_v4();
            let directory = directory.clone();
            async move {
                directory
                    .ensure_user(
                        id,
                        tenant,
                        name,
                        &format!("{}@acme.test", name.to_lowercase()),
                        roles,
                    )
                    .await
                    .unwrap();
                id
            }
        };
        let admin = user("Ada", &[dir::Role::Administrator]).await;
        let analyst = user("Ana", &[dir::Role::Analyst]).await;
        let agent = user("Aga", &[dir::Role::Agent]).await;
        let supervisor = user("Sue", &[dir::Role::Supervisor]).await;

        let mut config = Config {
            metrics_listen: None,
            database_url: db.url.clone(),
            identity_secret: IDENTITY_SECRET.to_owned(),
            upstreams: gateway::Upstreams {
                routing_url: format!("http://{}", closed_port().await),
                conversation_url: format!("http://{canary_addr}"),
                reporting_url: format!("http://{}", relay.addr),
            },
            auth: gateway::AuthConfig {
                hs256_secret: Some(JWT_SECRET.to_owned()),
                ..Default::default()
            },
            ..Config::default()
        };
        tweak(&mut config);
        let listeners = common::loopback_listeners().await;
        let gateway = listeners.public.local_addr().unwrap();
        let internal = listeners.internal.local_addr().unwrap();
        let shutdown = ShutdownSignal::new();
        let task = tokio::spawn(gateway::serve(config, listeners, shutdown.clone()));
        Stack {
            gateway,
            internal,
            directory,
            shutdown,
            task,
            seen,
            relay,
            canary_connections,
            parent,
            tenant,
            admin,
            analyst,
            agent,
            supervisor,
            _upstream_shutdown: upstream_shutdown,
            _db: db,
        }
    }

    fn token(&self, user: Uuid) -> String {
        gateway::mint_hs256_token(
            JWT_SECRET,
            "switchboard",
            "switchboard",
            &user.to_string(),
            Duration::from_secs(300),
        )
    }

    async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.gateway))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn reporting(&self) -> rep::reporting_service_client::ReportingServiceClient<Channel> {
        rep::reporting_service_client::ReportingServiceClient::new(self.channel().await)
    }

    async fn directory_client(
        &self,
    ) -> dir::directory_service_client::DirectoryServiceClient<Channel> {
        dir::directory_service_client::DirectoryServiceClient::new(self.channel().await)
    }
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn with_key<T>(message: T, secret: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", secret.parse().unwrap());
    request
}

fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

fn export(kind: rep::ReportKind) -> rep::ExportReportRequest {
    rep::ExportReportRequest {
        kind: kind as i32,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// Routing and authentication.

on_each_backend!(a_good_token_reaches_the_service_with_a_verified_identity);
async fn a_good_token_reaches_the_service_with_a_verified_identity(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.reporting().await;
    let mut request = authed(
        rep::GetCreatedClosedReportRequest::default(),
        &stack.token(stack.analyst),
    );
    request
        .metadata_mut()
        .insert("x-client-note", "kept".parse().unwrap());
    client.get_created_closed_report(request).await.unwrap();

    let SeenCall {
        method,
        identity,
        keys,
    } = stack.seen.last();
    assert_eq!(method, "GetCreatedClosedReport");
    assert_eq!(identity.principal_id, stack.analyst.to_string());
    assert_eq!(identity.principal_kind, PrincipalKind::User);
    assert_eq!(identity.tenant_id, stack.tenant.to_string());
    assert_eq!(identity.tenant_ancestry, vec![stack.parent.to_string()]);
    assert_eq!(identity.roles, vec![KitRole::Analyst]);
    assert_eq!(identity.display_name, "Ana");
    assert_eq!(identity.enabled_supervisor_actions, vec!["monitor"]);
    assert!(keys.contains(&"x-client-note".to_owned()));
    assert!(
        !keys.contains(&"authorization".to_owned()),
        "credentials are not forwarded: {keys:?}"
    );
    // Unary calls get the default deadline forwarded.
    assert!(keys.contains(&"grpc-timeout".to_owned()));
}

on_each_backend!(no_or_bad_credentials_are_refused_before_the_service);
async fn no_or_bad_credentials_are_refused_before_the_service(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.reporting().await;
    let err = client
        .get_created_closed_report(rep::GetCreatedClosedReportRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(reason(&err), "UNAUTHENTICATED");
    assert_eq!(err.message(), UNAUTHENTICATED_MESSAGE);

    let err = client
        .get_created_closed_report(authed(
            rep::GetCreatedClosedReportRequest::default(),
            "garbage",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .get_created_closed_report(with_key(
            rep::GetCreatedClosedReportRequest::default(),
            "sbk_nope",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unauthenticated, UNAUTHENTICATED_MESSAGE)
    );
    assert_eq!(stack.seen.count(), 0, "the service was never called");
}

on_each_backend!(client_sent_identity_headers_are_replaced);
async fn client_sent_identity_headers_are_replaced(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.reporting().await;
    let forged = Identity {
        tenant_id: Uuid::new_v4().to_string(),
        tenant_ancestry: vec![],
        principal_id: "mallory".to_owned(),
        principal_kind: PrincipalKind::User,
        display_name: "Mallory".to_owned(),
        roles: vec![KitRole::Administrator, KitRole::Service],
        enabled_supervisor_actions: vec![],
        time_zone: String::new(),
        reopen_window_secs: 0,
    };
    // A perfectly signed identity, if the client knew the secret: still replaced.
    let mut headers = http::HeaderMap::new();
    IdentityKey::new(IDENTITY_SECRET).unwrap().sign(
        "/switchboard.reporting.v1.ReportingService/GetCreatedClosedReport",
        &forged,
        &mut headers,
    );
    let mut request = authed(
        rep::GetCreatedClosedReportRequest::default(),
        &stack.token(stack.analyst),
    );
    for (name, value) in &headers {
        let name = tonic::metadata::AsciiMetadataKey::from_bytes(name.as_str().as_bytes()).unwrap();
        let value = tonic::metadata::AsciiMetadataValue::try_from(value.as_bytes()).unwrap();
        request.metadata_mut().insert(name, value);
    }
    request
        .metadata_mut()
        .insert("x-switchboard-identity-extra", "forged".parse().unwrap());
    client.get_created_closed_report(request).await.unwrap();

    let SeenCall { identity, keys, .. } = stack.seen.last();
    assert_eq!(identity.principal_id, stack.analyst.to_string());
    assert_eq!(identity.roles, vec![KitRole::Analyst]);
    let identity_headers: Vec<_> = keys
        .iter()
        .filter(|k| k.starts_with("x-switchboard-identity"))
        .collect();
    assert_eq!(identity_headers.len(), 3, "{identity_headers:?}");
    assert!(!keys.contains(&"x-switchboard-identity-extra".to_owned()));
}

on_each_backend!(internal_and_unknown_services_are_never_routed);
async fn internal_and_unknown_services_are_never_routed(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let channel = stack.channel().await;
    let token = stack.token(stack.admin);

    // routing-svc is down: had the call been routed, it would say UNAVAILABLE.
    let mut routing =
        routing_internal::routing_internal_service_client::RoutingInternalServiceClient::new(
            channel.clone(),
        );
    let err = routing
        .reserve_capacity(authed(
            routing_internal::ReserveCapacityRequest::default(),
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(
        err.message().contains("unknown service"),
        "{}",
        err.message()
    );

    // conversation-svc is the canary: nothing may connect to it.
    let mut conversation =
        conv_internal::conversation_internal_service_client::ConversationInternalServiceClient::new(
            channel.clone(),
        );
    let err = conversation
        .apply_assignment(authed(
            conv_internal::ApplyAssignmentRequest::default(),
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    // Without credentials too: the route is decided before anything else.
    let err = conversation
        .apply_assignment(conv_internal::ApplyAssignmentRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(stack.canary_connections.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------
// DirectoryInternalService: on the internal listener only, for services only.

type InternalClient<C> =
    dir_internal::directory_internal_service_client::DirectoryInternalServiceClient<C>;

impl Stack {
    /// A client of the internal listener signing `identity` with `secret`.
    fn internal_as(&self, secret: &str, identity: Identity) -> InternalClient<SignedChannel> {
        InternalClient::new(
            signed_channel(
                &format!("http://{}", self.internal),
                IdentityKey::new(secret).unwrap(),
                identity,
            )
            .unwrap(),
        )
    }

    /// A client of the internal listener as routing-svc.
    fn internal_as_routing(&self) -> InternalClient<SignedChannel> {
        self.internal_as(IDENTITY_SECRET, Identity::service("routing-svc"))
    }

    /// The identity the gateway signs for the tenant's administrator: correctly signed,
    /// but no service's.
    fn administrator_identity(&self) -> Identity {
        Identity {
            tenant_id: self.tenant.to_string(),
            tenant_ancestry: vec![self.parent.to_string()],
            principal_id: self.admin.to_string(),
            principal_kind: PrincipalKind::User,
            display_name: "Ada".to_owned(),
            roles: vec![KitRole::Administrator],
            enabled_supervisor_actions: Vec::new(),
            time_zone: String::new(),
            reopen_window_secs: 0,
        }
    }
}

fn get_users(tenant: Uuid, ids: &[Uuid]) -> dir_internal::GetUsersRequest {
    dir_internal::GetUsersRequest {
        tenant_id: tenant.to_string(),
        user_ids: ids.iter().map(Uuid::to_string).collect(),
    }
}

on_each_backend!(get_users_answers_only_the_asked_tenants_users);
async fn get_users_answers_only_the_asked_tenants_users(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.internal_as_routing();
    let unknown = Uuid::new_v4();
    let mut users = client
        .get_users(get_users(
            stack.tenant,
            &[stack.agent, stack.admin, unknown, stack.agent],
        ))
        .await
        .unwrap()
        .into_inner()
        .users;
    users.sort_by(|a, b| a.display_name.cmp(&b.display_name));
    let got: Vec<(String, String, String, Vec<i32>, bool)> = users
        .into_iter()
        .map(|u| (u.id, u.tenant_id, u.display_name, u.roles, u.active))
        .collect();
    let tenant = stack.tenant.to_string();
    assert_eq!(
        got,
        vec![
            (
                stack.admin.to_string(),
                tenant.clone(),
                "Ada".to_owned(),
                vec![dir::Role::Administrator as i32],
                true
            ),
            (
                stack.agent.to_string(),
                tenant.clone(),
                "Aga".to_owned(),
                vec![dir::Role::Agent as i32],
                true
            ),
        ],
        "the unknown id is absent and the duplicate answered once"
    );
    // The same users asked for in another tenant (here the parent) are absent.
    let foreign = client
        .get_users(get_users(stack.parent, &[stack.agent, stack.admin]))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(foreign.is_empty(), "{foreign:?}");

    let too_many: Vec<Uuid> = (0..=gateway::api::MAX_USER_IDS)
        .map(|_| Uuid::new_v4())
        .collect();
    let err = client
        .get_users(get_users(stack.tenant, &too_many))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .get_users(dir_internal::GetUsersRequest {
            tenant_id: "acme".to_owned(),
            user_ids: vec![stack.agent.to_string()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

on_each_backend!(tenant_ancestry_is_answered_to_services_and_tells_nothing_of_unknown_tenants);
async fn tenant_ancestry_is_answered_to_services_and_tells_nothing_of_unknown_tenants(
    db: common::TestDirectory,
) {
    let stack = Stack::start(db).await;
    let grandchild = Uuid::new_v4();
    stack
        .directory
        .ensure_tenant(grandchild, Some(stack.tenant), "Acme West")
        .await
        .unwrap();
    let client = stack.internal_as(IDENTITY_SECRET, Identity::service("conversation-svc"));
    let ancestry = |tenant: &str| {
        let mut client = client.clone();
        let request = dir_internal::GetTenantAncestryRequest {
            tenant_id: tenant.to_owned(),
        };
        async move {
            client
                .get_tenant_ancestry(request)
                .await
                .map(|answer| answer.into_inner().ancestor_tenant_ids)
        }
    };
    assert_eq!(
        ancestry(&grandchild.to_string()).await.unwrap(),
        [stack.tenant.to_string(), stack.parent.to_string()],
        "parent first, up to the top-level tenant"
    );
    assert_eq!(
        ancestry(&stack.tenant.to_string().to_uppercase())
            .await
            .unwrap(),
        [stack.parent.to_string()],
        "ids are read in any case"
    );
    // A top-level tenant and a tenant nobody created are answered alike.
    assert!(
        ancestry(&stack.parent.to_string())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        ancestry(&Uuid::new_v4().to_string())
            .await
            .unwrap()
            .is_empty()
    );
    let err = ancestry("acme").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Tenants' users never ask, however high their roles.
    let admin = Identity {
        tenant_id: stack.parent.to_string(),
        tenant_ancestry: Vec::new(),
        principal_id: stack.admin.to_string(),
        principal_kind: PrincipalKind::User,
        display_name: "Ada".to_owned(),
        roles: vec![KitRole::Administrator, KitRole::Supervisor],
        enabled_supervisor_actions: Vec::new(),
        time_zone: String::new(),
        reopen_window_secs: 0,
    };
    let err = stack
        .internal_as(IDENTITY_SECRET, admin)
        .get_tenant_ancestry(dir_internal::GetTenantAncestryRequest {
            tenant_id: stack.tenant.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "ROLE_REQUIRED");
    // Nor does anyone through the public listener.
    let err = InternalClient::new(stack.channel().await)
        .get_tenant_ancestry(authed(
            dir_internal::GetTenantAncestryRequest {
                tenant_id: stack.tenant.to_string(),
            },
            &stack.token(stack.admin),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

on_each_backend!(the_internal_listener_refuses_unsigned_and_non_service_callers);
async fn the_internal_listener_refuses_unsigned_and_non_service_callers(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let request = || get_users(stack.tenant, &[stack.agent]);

    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", stack.internal))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut unsigned = InternalClient::new(plain);
    let err = unsigned.get_users(request()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // A client's credentials mean nothing there: only a signed identity does.
    let err = unsigned
        .get_users(authed(request(), &stack.token(stack.admin)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let forged = stack.internal_as(
        "not-the-suite-identity-secret",
        Identity::service("routing-svc"),
    );
    let err = forged.clone().get_users(request()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Correctly signed, but a tenant's administrator is no service.
    let admin = stack.administrator_identity();
    let err = stack
        .internal_as(IDENTITY_SECRET, admin)
        .get_users(request())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "ROLE_REQUIRED");

    // The internal listener serves nothing of the public API.
    let mut directory = dir::directory_service_client::DirectoryServiceClient::new(
        signed_channel(
            &format!("http://{}", stack.internal),
            IdentityKey::new(IDENTITY_SECRET).unwrap(),
            Identity::service("routing-svc"),
        )
        .unwrap(),
    );
    let err = directory
        .get_current_identity(dir::GetCurrentIdentityRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

on_each_backend!(the_public_listener_does_not_serve_the_internal_directory);
async fn the_public_listener_does_not_serve_the_internal_directory(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let request = || get_users(stack.tenant, &[stack.agent]);
    let mut client = InternalClient::new(stack.channel().await);
    let err = client
        .get_users(authed(request(), &stack.token(stack.admin)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    // Not even for a caller presenting a valid service signature.
    let mut signed = InternalClient::new(
        signed_channel(
            &format!("http://{}", stack.gateway),
            IdentityKey::new(IDENTITY_SECRET).unwrap(),
            Identity::service("routing-svc"),
        )
        .unwrap(),
    );
    let err = signed.get_users(request()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    // Reflection of the public listener does not know the service (listing is checked in
    // reflection_lists_only_public_services).
    use tonic_reflection::pb::v1;
    let mut reflection =
        v1::server_reflection_client::ServerReflectionClient::new(stack.channel().await);
    let ask = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                gateway::INTERNAL_SERVICE.to_owned(),
            ),
        ),
    };
    let err = reflection
        .server_reflection_info(futures::stream::iter([ask]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

on_each_backend!(a_service_that_is_down_gives_unavailable);
async fn a_service_that_is_down_gives_unavailable(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut agents = routing::agent_service_client::AgentServiceClient::new(stack.channel().await);
    let started = Instant::now();
    let err = agents
        .get_agent_state(authed(
            routing::GetAgentStateRequest::default(),
            &stack.token(stack.agent),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(reason(&err), "UNAVAILABLE");
    assert_eq!(err.message(), "routing-svc is unavailable");
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------
// Authorization.

on_each_backend!(a_missing_role_is_refused_at_the_gateway);
async fn a_missing_role_is_refused_at_the_gateway(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.reporting().await;
    let err = client
        .get_created_closed_report(authed(
            rep::GetCreatedClosedReportRequest::default(),
            &stack.token(stack.agent),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "ROLE_REQUIRED");
    assert_eq!(stack.seen.count(), 0);
}

on_each_backend!(a_disabled_supervisor_action_is_refused_and_an_enabled_one_goes_through);
async fn a_disabled_supervisor_action_is_refused_and_an_enabled_one_goes_through(
    db: common::TestDirectory,
) {
    let stack = Stack::start(db).await;
    let mut supervisor =
        conv::supervisor_service_client::SupervisorServiceClient::new(stack.channel().await);
    let token = stack.token(stack.supervisor);
    let err = supervisor
        .force_close_conversation(authed(
            conv::ForceCloseConversationRequest::default(),
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "ACTION_DISABLED");
    assert!(err.message().contains("force_close"), "{}", err.message());
    assert_eq!(stack.canary_connections.load(Ordering::SeqCst), 0);

    // MONITOR is enabled: the call is forwarded (the canary never answers, so it times out).
    let mut request = authed(conv::MonitorConversationRequest::default(), &token);
    request.set_timeout(Duration::from_millis(500));
    let err = supervisor.monitor_conversation(request).await.unwrap_err();
    assert_ne!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(stack.canary_connections.load(Ordering::SeqCst) >= 1);
}

on_each_backend!(directory_writes_through_the_gateway_reach_its_next_call);
/// The gateway keeps a caller's directory facts for `auth.cache_ttl_ms`; its own writes drop
/// them at once, so the next proxied call sees new roles, name and settings, and a
/// deactivated user is refused.
async fn directory_writes_through_the_gateway_reach_its_next_call(db: common::TestDirectory) {
    let stack = Stack::start_with(db, |config| config.auth.cache_ttl_ms = 600_000).await;
    let mut reporting = stack.reporting().await;
    let mut directory = stack.directory_client().await;
    let (analyst, admin) = (stack.token(stack.analyst), stack.token(stack.admin));
    let report = || authed(rep::GetCreatedClosedReportRequest::default(), &analyst);
    for _ in 0..2 {
        reporting.get_created_closed_report(report()).await.unwrap();
    }
    let before = stack.seen.last().identity;
    assert_eq!(before.roles, vec![KitRole::Analyst]);
    assert_eq!(before.enabled_supervisor_actions, vec!["monitor"]);

    let update_user = |user: dir::User, paths: &[&str]| dir::UpdateUserRequest {
        request_id: Uuid::new_v4().to_string(),
        user: Some(user),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };
    let analyst_user = |user: dir::User| dir::User {
        id: stack.analyst.to_string(),
        ..user
    };
    directory
        .update_user(authed(
            update_user(
                analyst_user(dir::User {
                    display_name: "Ana Lyst".to_owned(),
                    roles: vec![dir::Role::Analyst as i32, dir::Role::Supervisor as i32],
                    ..Default::default()
                }),
                &["display_name", "roles"],
            ),
            &admin,
        ))
        .await
        .unwrap();
    directory
        .update_tenant_settings(authed(
            dir::UpdateTenantSettingsRequest {
                request_id: Uuid::new_v4().to_string(),
                settings: Some(dir::TenantSettings {
                    enabled_supervisor_actions: vec![dir::SupervisorAction::Join as i32],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["enabled_supervisor_actions".to_owned()],
                }),
            },
            &admin,
        ))
        .await
        .unwrap();
    reporting.get_created_closed_report(report()).await.unwrap();
    let after = stack.seen.last().identity;
    assert_eq!(after.roles, vec![KitRole::Supervisor, KitRole::Analyst]);
    assert_eq!(after.display_name, "Ana Lyst");
    assert_eq!(after.enabled_supervisor_actions, vec!["join"]);

    directory
        .update_user(authed(
            update_user(analyst_user(dir::User::default()), &["active"]),
            &admin,
        ))
        .await
        .unwrap();
    let err = reporting
        .get_created_closed_report(report())
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unauthenticated, UNAUTHENTICATED_MESSAGE)
    );
}

// ---------------------------------------------------------------------------------------
// Streams, failures, deadlines.

on_each_backend!(a_server_stream_passes_through);
async fn a_server_stream_passes_through(db: common::TestDirectory) {
    let stack = Stack::start_with(db, |config| config.default_deadline_ms = 200).await;
    let mut client = stack.reporting().await;
    let mut stream = client
        .export_report(authed(
            export(rep::ReportKind::CreatedClosed),
            &stack.token(stack.analyst),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        let (data, rows) = chunk_of(message);
        chunks.push((String::from_utf8(data).unwrap(), rows));
    }
    assert_eq!(
        chunks,
        vec![
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
            ("c".to_owned(), 3)
        ]
    );
    // The default deadline does not apply to streams.
    let keys = stack.seen.last().keys;
    assert!(!keys.contains(&"grpc-timeout".to_owned()));
}

on_each_backend!(a_stream_that_fails_midway_ends_with_unavailable);
async fn a_stream_that_fails_midway_ends_with_unavailable(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.reporting().await;
    let mut stream = client
        .export_report(authed(
            export(rep::ReportKind::CloseTime),
            &stack.token(stack.analyst),
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(chunk_of(first).0, b"first");
    stack.relay.cut();
    let err = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends promptly")
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(err.message(), "reporting-svc stream failed");

    // The next call reconnects.
    client
        .get_created_closed_report(authed(
            rep::GetCreatedClosedReportRequest::default(),
            &stack.token(stack.analyst),
        ))
        .await
        .unwrap();
}

/// A client that sends `grpc-timeout` but keeps no timer of its own, so that the status
/// observed is the gateway's.
fn timerless_client(
    addr: SocketAddr,
) -> rep::reporting_service_client::ReportingServiceClient<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic::body::Body,
    >,
> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    rep::reporting_service_client::ReportingServiceClient::with_origin(
        client,
        format!("http://{addr}").parse().unwrap(),
    )
}

on_each_backend!(the_client_deadline_is_enforced_and_forwarded);
async fn the_client_deadline_is_enforced_and_forwarded(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = timerless_client(stack.gateway);
    let mut request = authed(
        rep::GetCloseTimeReportRequest::default(),
        &stack.token(stack.analyst),
    );
    request.set_timeout(Duration::from_millis(400));
    let started = Instant::now();
    let err = client.get_close_time_report(request).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let keys = stack.seen.last().keys;
    assert!(keys.contains(&"grpc-timeout".to_owned()));
}

on_each_backend!(the_default_deadline_cuts_unary_calls_but_not_streams);
async fn the_default_deadline_cuts_unary_calls_but_not_streams(db: common::TestDirectory) {
    let stack = Stack::start_with(db, |config| config.default_deadline_ms = 300).await;
    let mut client = timerless_client(stack.gateway);
    let token = stack.token(stack.analyst);
    let started = Instant::now();
    let err = client
        .get_close_time_report(authed(rep::GetCloseTimeReportRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let mut stream = client
        .export_report(authed(export(rep::ReportKind::CloseTime), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    assert!(
        tokio::time::timeout(Duration::from_millis(800), stream.message())
            .await
            .is_err(),
        "the stream is still open past the default deadline"
    );
}

// ---------------------------------------------------------------------------------------
// Health, reflection, shutdown.

on_each_backend!(reflection_lists_only_public_services);
async fn reflection_lists_only_public_services(db: common::TestDirectory) {
    use tonic_reflection::pb::v1;
    use tonic_reflection::pb::v1alpha;
    let stack = Stack::start(db).await;
    let channel = stack.channel().await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
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
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for public in gateway::HEALTH_SERVICES {
        assert!(
            names.iter().any(|n| n == public),
            "{public} missing from {names:?}"
        );
    }
    assert!(names.iter().all(|n| !n.contains(".internal.")), "{names:?}");

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
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
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "switchboard.directory.v1.DirectoryService")
    );
    assert!(list.service.iter().all(|s| !s.name.contains(".internal.")));
}

on_each_backend!(shutdown_reports_not_serving_then_ends_streams);
async fn shutdown_reports_not_serving_then_ends_streams(db: common::TestDirectory) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let stack = Stack::start(db).await;
    let channel = stack.channel().await;
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: "switchboard.routing.v1.AgentService".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "switchboard.directory.v1.DirectoryService".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    let mut client = rep::reporting_service_client::ReportingServiceClient::new(channel);
    let mut stream = client
        .export_report(authed(
            export(rep::ReportKind::CloseTime),
            &stack.token(stack.analyst),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());

    let internal_channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", stack.internal))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut internal_watch = HealthClient::new(internal_channel)
        .watch(HealthCheckRequest {
            service: gateway::INTERNAL_SERVICE.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        internal_watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    stack.shutdown.trigger();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        internal_watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32,
        "the internal listener drains with the public one"
    );
    let err = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("open streams end at shutdown")
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    drop((watch, internal_watch, stream, client, health));
    let result = tokio::time::timeout(Duration::from_secs(5), async {
        let mut stack = stack;
        (&mut stack.task).await
    })
    .await
    .expect("the gateway stops");
    result.unwrap().unwrap();
}

#[tokio::test]
async fn a_short_identity_secret_is_refused_at_start() {
    let db = common::sqlite().await;
    let config = Config {
        metrics_listen: None,
        database_url: db.url.clone(),
        identity_secret: "short".to_owned(),
        ..Config::default()
    };
    let listeners = common::loopback_listeners().await;
    let err = gateway::serve(config, listeners, ShutdownSignal::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("identity"), "{err:#}");
}

// ---------------------------------------------------------------------------------------
// DirectoryService through the gateway.

fn new_user(name: &str, email: &str, roles: &[dir::Role]) -> dir::User {
    dir::User {
        display_name: name.to_owned(),
        email: email.to_owned(),
        roles: roles.iter().map(|r| *r as i32).collect(),
        ..Default::default()
    }
}

on_each_backend!(users_round_trip_and_a_retry_returns_the_first_answer);
async fn users_round_trip_and_a_retry_returns_the_first_answer(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.directory_client().await;
    let admin = stack.token(stack.admin);
    let request_id = Uuid::new_v4().to_string();
    let create = || dir::CreateUserRequest {
        request_id: request_id.clone(),
        user: Some(new_user("Zed Agent", "Zed@Acme.test", &[dir::Role::Agent])),
    };
    let first = client
        .create_user(authed(create(), &admin))
        .await
        .unwrap()
        .into_inner();
    let retry = client
        .create_user(authed(create(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retry);
    let user = first.user.unwrap();
    assert_eq!(user.tenant_id, stack.tenant.to_string());
    assert_eq!(user.email, "zed@acme.test");
    assert!(user.active);

    let listed = client
        .list_users(authed(dir::ListUsersRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .users
            .iter()
            .filter(|u| u.email == "zed@acme.test")
            .count(),
        1
    );
    let names: Vec<_> = listed
        .users
        .iter()
        .map(|u| u.display_name.as_str())
        .collect();
    assert_eq!(names, vec!["Ada", "Aga", "Ana", "Sue", "Zed Agent"]);
    let agents = client
        .list_users(authed(
            dir::ListUsersRequest {
                role: dir::Role::Agent as i32,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(agents.users.len(), 2);

    // The new user can sign in at once, and is refused at once when deactivated.
    let token = stack.token(user.id.parse().unwrap());
    let me = client
        .get_current_identity(authed(dir::GetCurrentIdentityRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.principal_id, user.id);
    assert_eq!(me.roles, vec![dir::Role::Agent as i32]);
    assert_eq!(me.tenant_ancestry, vec![stack.parent.to_string()]);
    let updated = client
        .update_user(authed(
            dir::UpdateUserRequest {
                request_id: Uuid::new_v4().to_string(),
                user: Some(dir::User {
                    id: user.id.clone(),
                    active: false,
                    display_name: "ignored, not in the mask".to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["active".to_owned()],
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(!updated.active);
    assert_eq!(updated.display_name, "Zed Agent");
    let err = client
        .get_current_identity(authed(dir::GetCurrentIdentityRequest {}, &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // The email stays taken; agents cannot create users.
    let err = client
        .create_user(authed(
            dir::CreateUserRequest {
                request_id: Uuid::new_v4().to_string(),
                user: Some(new_user("Zed Again", "zed@acme.test", &[dir::Role::Agent])),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = client
        .create_user(authed(
            dir::CreateUserRequest {
                request_id: Uuid::new_v4().to_string(),
                user: Some(new_user(
                    "Eve",
                    "eve@acme.test",
                    &[dir::Role::Administrator],
                )),
            },
            &stack.token(stack.agent),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::PermissionDenied, "ROLE_REQUIRED")
    );
    let err = client
        .create_user(authed(
            dir::CreateUserRequest {
                request_id: "not-a-uuid".to_owned(),
                user: Some(new_user("Eve", "eve@acme.test", &[dir::Role::Agent])),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "request_id: must be a UUID");

    // One audit row per applied change, newest first.
    let audit = client
        .list_audit_log_entries(authed(dir::ListAuditLogEntriesRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    let methods: Vec<_> = audit
        .entries
        .iter()
        .map(|e| e.method.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(methods, vec!["UpdateUser", "CreateUser"]);
    assert_eq!(audit.entries[1].request_id, request_id);
    assert_eq!(audit.entries[1].actor_id, stack.admin.to_string());
    assert_eq!(audit.entries[1].target_id, user.id);
}

on_each_backend!(users_of_another_tenant_are_not_found);
async fn users_of_another_tenant_are_not_found(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let other_tenant = Uuid::new_v4();
    let stranger = Uuid::new_v4();
    stack
        .directory
        .ensure_tenant(other_tenant, None, "Other")
        .await
        .unwrap();
    stack
        .directory
        .ensure_user(
            stranger,
            other_tenant,
            "Stranger",
            "stranger@other.test",
            &[dir::Role::Agent],
        )
        .await
        .unwrap();
    let mut client = stack.directory_client().await;
    let err = client
        .get_user(authed(
            dir::GetUserRequest {
                user_id: stranger.to_string(),
            },
            &stack.token(stack.admin),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason(&err), "NOT_FOUND");
}

on_each_backend!(api_keys_are_shown_once_work_and_stop_when_revoked);
async fn api_keys_are_shown_once_work_and_stop_when_revoked(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.directory_client().await;
    let admin = stack.token(stack.admin);
    let request_id = Uuid::new_v4().to_string();
    let create = || dir::CreateApiKeyRequest {
        request_id: request_id.clone(),
        api_key: Some(dir::ApiKey {
            display_name: "Web chat connector".to_owned(),
            roles: vec![dir::Role::Bot as i32],
            ..Default::default()
        }),
    };
    let created = client
        .create_api_key(authed(create(), &admin))
        .await
        .unwrap()
        .into_inner();
    let key = created.api_key.unwrap();
    assert!(created.secret.starts_with("sbk_"));
    assert!(created.secret.starts_with(&key.prefix));
    let retry = client
        .create_api_key(authed(create(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.api_key.unwrap().id, key.id);
    assert!(retry.secret.is_empty(), "the secret is never stored");

    let me = client
        .get_current_identity(with_key(dir::GetCurrentIdentityRequest {}, &created.secret))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.principal_id, key.id);
    assert_eq!(me.display_name, "Web chat connector");
    assert_eq!(me.roles, vec![dir::Role::Bot as i32]);

    let listed = client
        .list_api_keys(authed(dir::ListApiKeysRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.api_keys.len(), 1);
    assert!(listed.api_keys[0].revoke_time.is_none());

    let revoked = client
        .revoke_api_key(authed(
            dir::RevokeApiKeyRequest {
                request_id: Uuid::new_v4().to_string(),
                api_key_id: key.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.api_key.unwrap().revoke_time.is_some());
    let err = client
        .get_current_identity(with_key(dir::GetCurrentIdentityRequest {}, &created.secret))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unauthenticated, UNAUTHENTICATED_MESSAGE)
    );
}

on_each_backend!(tenants_and_settings);
async fn tenants_and_settings(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.directory_client().await;
    let admin = stack.token(stack.admin);
    let child = client
        .create_tenant(authed(
            dir::CreateTenantRequest {
                request_id: Uuid::new_v4().to_string(),
                tenant: Some(dir::Tenant {
                    display_name: "Acme Europe".to_owned(),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(child.parent_tenant_id, stack.tenant.to_string());
    let listed = client
        .list_tenants(authed(dir::ListTenantsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tenants, vec![child.clone()]);
    let got = client
        .get_tenant(authed(
            dir::GetTenantRequest {
                tenant_id: child.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.tenant.unwrap(), child);
    let own = client
        .get_tenant(authed(dir::GetTenantRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.tenant.unwrap().id, stack.tenant.to_string());
    // The parent tenant is out of reach.
    let err = client
        .get_tenant(authed(
            dir::GetTenantRequest {
                tenant_id: stack.parent.to_string(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .create_tenant(authed(
            dir::CreateTenantRequest {
                request_id: Uuid::new_v4().to_string(),
                tenant: Some(dir::Tenant {
                    display_name: "Sibling".to_owned(),
                    parent_tenant_id: stack.parent.to_string(),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Enabling JOIN takes effect on the next call.
    let settings = client
        .update_tenant_settings(authed(
            dir::UpdateTenantSettingsRequest {
                request_id: Uuid::new_v4().to_string(),
                settings: Some(dir::TenantSettings {
                    enabled_supervisor_actions: vec![
                        dir::SupervisorAction::Monitor as i32,
                        dir::SupervisorAction::Join as i32,
                    ],
                    time_zone: "Europe/Paris".to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["enabled_supervisor_actions".to_owned()],
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(settings.enabled_supervisor_actions.len(), 2);
    assert_eq!(settings.time_zone, "", "not in the mask");
    assert_eq!(settings.reopen_window.unwrap().seconds, 86_400);
    let read = client
        .get_tenant_settings(authed(
            dir::GetTenantSettingsRequest {},
            &stack.token(stack.agent),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.settings.unwrap(), settings);
    let mut supervisor =
        conv::supervisor_service_client::SupervisorServiceClient::new(stack.channel().await);
    let mut request = authed(
        conv::JoinConversationRequest::default(),
        &stack.token(stack.supervisor),
    );
    request.set_timeout(Duration::from_millis(300));
    let err = supervisor.join_conversation(request).await.unwrap_err();
    assert_ne!(err.code(), Code::PermissionDenied, "{err:?}");

    let err = client
        .update_tenant_settings(authed(
            dir::UpdateTenantSettingsRequest {
                request_id: Uuid::new_v4().to_string(),
                settings: Some(dir::TenantSettings {
                    time_zone: "Mars/Olympus".to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["time_zone".to_owned()],
                }),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let violations = err.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "settings.time_zone");
}

on_each_backend!(clients_connect_over_tls_when_a_certificate_is_configured);
/// With `tls` configured, clients reach the gateway over TLS only.
async fn clients_connect_over_tls_when_a_certificate_is_configured(db: common::TestDirectory) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../server-kit/testdata/tls");
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let stack = Stack::start_with(db, |config| {
        config.tls = Some(gateway::TlsConfig {
            cert: format!("file:{}", cert.display()),
            key: format!("file:{}", key.display()),
        });
    })
    .await;
    let ca = tonic::transport::Certificate::from_pem(std::fs::read(&cert).unwrap());
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", stack.gateway))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(ca)
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("a client trusting the certificate connects");
    let mut directory = dir::directory_service_client::DirectoryServiceClient::new(channel);
    let me = directory
        .get_current_identity(authed(
            dir::GetCurrentIdentityRequest {},
            &stack.token(stack.agent),
        ))
        .await
        .expect("an authenticated call over TLS")
        .into_inner();
    assert_eq!(me.principal_id, stack.agent.to_string());

    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", stack.gateway))
        .unwrap()
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => dir::directory_service_client::DirectoryServiceClient::new(channel)
            .get_current_identity(authed(
                dir::GetCurrentIdentityRequest {},
                &stack.token(stack.agent),
            ))
            .await
            .is_err(),
    };
    assert!(refused, "plaintext is not served when TLS is configured");
}

// ---------------------------------------------------------------------------------------
// Request ids (AIP-155).

on_each_backend!(request_ids_are_scoped_to_the_caller_and_the_request);
async fn request_ids_are_scoped_to_the_caller_and_the_request(db: common::TestDirectory) {
    // Purge often, so the test sees an expired request record go without waiting long.
    let stack = Stack::start_with(db, |config| config.request_log.purge_interval_ms = 20).await;
    let other_admin = Uuid::new_v4();
    stack
        .directory
        .ensure_user(
            other_admin,
            stack.tenant,
            "Abe",
            "abe@acme.test",
            &[dir::Role::Administrator],
        )
        .await
        .unwrap();
    let (ada, abe) = (stack.token(stack.admin), stack.token(other_admin));
    let mut client = stack.directory_client().await;
    let request_id = Uuid::new_v4().to_string();
    let create = |name: &str| dir::CreateUserRequest {
        request_id: request_id.clone(),
        user: Some(new_user(
            name,
            &format!("{}@acme.test", name.to_lowercase()),
            &[dir::Role::Agent],
        )),
    };

    let zed = client
        .create_user(authed(create("Zed"), &ada))
        .await
        .unwrap()
        .into_inner();
    // Abe's request is his own: applied, and answered with his user.
    let yan = client
        .create_user(authed(create("Yan"), &abe))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(yan.user.as_ref().unwrap().email, "yan@acme.test");
    assert_ne!(yan.user.as_ref().unwrap().id, zed.user.as_ref().unwrap().id);

    // An exact retry gets the first answer.
    let retry = client
        .create_user(authed(create("Zed"), &ada))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, zed);

    // The same request_id with another body is refused and changes nothing.
    let reused = client
        .create_user(authed(create("Xia"), &ada))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");
    assert_eq!(reason(&reused), "INVALID_ARGUMENT");
    assert!(
        reused.message().starts_with(&format!(
            "request_id: {request_id} was already used for a different request"
        )),
        "{reused:?}"
    );
    let emails = |users: Vec<dir::User>| -> Vec<String> {
        let mut emails: Vec<String> = users.into_iter().map(|u| u.email).collect();
        emails.sort();
        emails
    };
    let listed = client
        .list_users(authed(dir::ListUsersRequest::default(), &ada))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(!emails(listed).contains(&"xia@acme.test".to_owned()));

    // Ada's record passes the retention (a day): the purge deletes it and the request_id
    // is free again. Abe's recent record stays.
    let db = switchboard_server_kit::Db::connect(&stack._db.url)
        .await
        .unwrap();
    let backdated =
        sqlx::query("UPDATE request_log SET created_at = created_at - $1 WHERE caller = $2")
            .bind(25 * 3_600 * 1_000_000_i64)
            .bind(stack.admin.to_string())
            .execute(db.writer())
            .await
            .unwrap()
            .rows_affected();
    assert_eq!(backdated, 1);
    db.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let xia = loop {
        match client.create_user(authed(create("Xia"), &ada)).await {
            Ok(response) => break response.into_inner(),
            Err(status)
                if status.code() == Code::InvalidArgument
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("the expired record was not purged: {status:?}"),
        }
    };
    assert_eq!(xia.user.unwrap().email, "xia@acme.test");
    let abe_retry = client
        .create_user(authed(create("Yan"), &abe))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(abe_retry, yan);
}

on_each_backend!(card_numbers_in_directory_names_are_stored_masked);
/// Card numbers typed into the directory's names are stored masked, answered masked and
/// signed into identities masked (product rule 14).
async fn card_numbers_in_directory_names_are_stored_masked(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.directory_client().await;
    let admin = stack.token(stack.admin);
    let user = client
        .create_user(authed(
            dir::CreateUserRequest {
                request_id: Uuid::new_v4().to_string(),
                user: Some(new_user(
                    "Zed 4111 1111 1111 1111",
                    "zed@acme.test",
                    &[dir::Role::Agent],
                )),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.display_name, "Zed 4111 11** **** 1111");
    let renamed = client
        .update_user(authed(
            dir::UpdateUserRequest {
                request_id: Uuid::new_v4().to_string(),
                user: Some(dir::User {
                    id: user.id.clone(),
                    display_name: "Zed 5555.5555.5555.4444".to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".to_owned()],
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(renamed.display_name, "Zed 5555.55**.****.4444");
    let me = client
        .get_current_identity(authed(
            dir::GetCurrentIdentityRequest {},
            &stack.token(user.id.parse().unwrap()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.display_name, "Zed 5555.55**.****.4444");
    let key = client
        .create_api_key(authed(
            dir::CreateApiKeyRequest {
                request_id: Uuid::new_v4().to_string(),
                api_key: Some(dir::ApiKey {
                    display_name: "Connector ٤١١١-١١١١-١١١١-١١١١".to_owned(),
                    roles: vec![dir::Role::Bot as i32],
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(key.display_name, "Connector ٤١١١-١١**-****-١١١١");
    let tenant = client
        .create_tenant(authed(
            dir::CreateTenantRequest {
                request_id: Uuid::new_v4().to_string(),
                tenant: Some(dir::Tenant {
                    display_name: "Acme 3782_822463_10005".to_owned(),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(tenant.display_name, "Acme 3782_82****_*0005");

    // What the tables hold, not only what is answered.
    let db = switchboard_server_kit::Db::connect(&stack._db.url)
        .await
        .unwrap();
    for (table, id, expected) in [
        ("users", &user.id, "Zed 5555.55**.****.4444"),
        ("api_keys", &key.id, "Connector ٤١١١-١١**-****-١١١١"),
        ("tenants", &tenant.id, "Acme 3782_82****_*0005"),
    ] {
        let (stored,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT display_name FROM {table} WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(stored, expected, "{table}");
    }
    db.close().await;
}

// ---------------------------------------------------------------------------------------
// Teams: DirectoryService through the gateway, and their members for services.

type DirectoryClient = dir::directory_service_client::DirectoryServiceClient<Channel>;

fn new_team(request_id: &str, name: &str) -> dir::CreateTeamRequest {
    dir::CreateTeamRequest {
        request_id: request_id.to_owned(),
        team: Some(dir::Team {
            display_name: name.to_owned(),
            ..Default::default()
        }),
    }
}

async fn create_team(client: &mut DirectoryClient, token: &str, name: &str) -> dir::Team {
    client
        .create_team(authed(new_team(&Uuid::new_v4().to_string(), name), token))
        .await
        .unwrap()
        .into_inner()
        .team
        .unwrap()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

/// The request field a refusal names (`google.rpc.BadRequest`).
fn violated_field(status: &Status) -> String {
    status
        .get_details_bad_request()
        .and_then(|bad| bad.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

async fn team_names(client: &mut DirectoryClient, token: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_teams(authed(
                dir::ListTeamsRequest {
                    page_size: 1,
                    page_token,
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner();
        names.extend(page.teams.into_iter().map(|t| t.display_name));
        if page.next_page_token.is_empty() {
            return names;
        }
        page_token = page.next_page_token;
    }
}

async fn rename_refused(
    client: &mut DirectoryClient,
    request: dir::UpdateTeamRequest,
    token: &str,
) -> Status {
    client
        .update_team(authed(request, token))
        .await
        .expect_err("the rename is refused")
}

fn delete_team(id: &str) -> dir::DeleteTeamRequest {
    dir::DeleteTeamRequest {
        request_id: Uuid::new_v4().to_string(),
        team_id: id.to_owned(),
    }
}

fn rename_team(id: &str, name: &str, paths: &[&str]) -> dir::UpdateTeamRequest {
    dir::UpdateTeamRequest {
        request_id: Uuid::new_v4().to_string(),
        team: Some(dir::Team {
            id: id.to_owned(),
            display_name: name.to_owned(),
            ..Default::default()
        }),
        update_mask: mask(paths),
    }
}

on_each_backend!(administrators_create_rename_and_delete_teams_everyone_lists_them);
async fn administrators_create_rename_and_delete_teams_everyone_lists_them(
    db: common::TestDirectory,
) {
    let stack = Stack::start(db).await;
    let mut client = stack.directory_client().await;
    let admin = stack.token(stack.admin);
    let agent = stack.token(stack.agent);

    // Created once, whatever the retries; trimmed, masked.
    let request_id = Uuid::new_v4().to_string();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let answer = client
            .create_team(authed(
                new_team(&request_id, "  Billing 4111 1111 1111 1111 "),
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        answers.push(answer);
    }
    assert_eq!(
        answers[0], answers[1],
        "the retry answers as the first call"
    );
    let billing = answers[0].team.clone().unwrap();
    assert_eq!(billing.display_name, "Billing 4111 11** **** 1111");
    assert_eq!(billing.tenant_id, stack.tenant.to_string());
    assert!(billing.create_time.is_some());
    let err = client
        .create_team(authed(new_team(&request_id, "Sales"), &admin))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), violated_field(&err).as_str()),
        (Code::InvalidArgument, "request_id")
    );

    // A name is required, bounded and unique in the tenant without regard to case.
    for bad in ["", "   ", &"x".repeat(201), "tab\u{7}bell"] {
        let err = client
            .create_team(authed(new_team(&Uuid::new_v4().to_string(), bad), &admin))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), violated_field(&err).as_str()),
            (Code::InvalidArgument, "team.display_name"),
            "{bad:?}"
        );
    }
    let err = client
        .create_team(authed(
            dir::CreateTeamRequest {
                request_id: Uuid::new_v4().to_string(),
                team: None,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "team");
    let err = client
        .create_team(authed(
            new_team(&Uuid::new_v4().to_string(), "billing 4111 1111 1111 1111"),
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::AlreadyExists, "ALREADY_EXISTS")
    );

    // Only administrators change teams; every role lists them, by name.
    for token in [&agent, &stack.token(stack.supervisor)] {
        let err = client
            .create_team(authed(new_team(&Uuid::new_v4().to_string(), "Mine"), token))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), reason(&err).as_str()),
            (Code::PermissionDenied, "ROLE_REQUIRED")
        );
    }
    let sales = create_team(&mut client, &admin, "Sales").await;
    let apac = create_team(&mut client, &admin, "APAC").await;
    assert_eq!(
        team_names(&mut client, &agent).await,
        ["APAC", "Billing 4111 11** **** 1111", "Sales"]
    );
    let err = client
        .list_teams(authed(
            dir::ListTeamsRequest {
                page_size: 0,
                page_token: "garbage".to_owned(),
            },
            &agent,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "page_token");

    // Renamed with the lowerCamelCase mask grpcurl users write; a taken name, an unknown
    // team, a bad mask and a non-administrator are refused.
    let renamed = client
        .update_team(authed(
            rename_team(&billing.id, "Billing", &["displayName"]),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .team
        .unwrap();
    assert_eq!(
        (renamed.id.as_str(), renamed.display_name.as_str()),
        (billing.id.as_str(), "Billing")
    );
    let err = rename_refused(
        &mut client,
        rename_team(&sales.id, "APAC", &["display_name"]),
        &admin,
    )
    .await;
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let unknown = Uuid::new_v4().to_string();
    let err = rename_refused(
        &mut client,
        rename_team(&unknown, "Ghosts", &["display_name"]),
        &admin,
    )
    .await;
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, format!("team {unknown} not found").as_str())
    );
    let err = rename_refused(
        &mut client,
        rename_team(&sales.id, "Sales EU", &["tenant_id"]),
        &admin,
    )
    .await;
    assert_eq!(violated_field(&err), "update_mask");
    let err = rename_refused(&mut client, rename_team(&sales.id, "Sales EU", &[]), &admin).await;
    assert_eq!(violated_field(&err), "update_mask");
    let err = rename_refused(
        &mut client,
        rename_team(&sales.id, "Sales EU", &["display_name"]),
        &agent,
    )
    .await;
    assert_eq!(err.code(), Code::PermissionDenied);

    // Deleted once: a retry answers as the first time, a new request finds nothing.
    let delete = delete_team(&apac.id);
    client
        .delete_team(authed(delete.clone(), &admin))
        .await
        .unwrap();
    client
        .delete_team(authed(delete.clone(), &admin))
        .await
        .unwrap();
    let err = client
        .delete_team(authed(
            dir::DeleteTeamRequest {
                request_id: Uuid::new_v4().to_string(),
                ..delete
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(team_names(&mut client, &agent).await, ["Billing", "Sales"]);

    // Each applied change is in the audit log once, naming the team.
    let audit = client
        .list_audit_log_entries(authed(dir::ListAuditLogEntriesRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    let changes: Vec<(&str, &str)> = audit
        .entries
        .iter()
        .map(|e| (e.method.rsplit('/').next().unwrap(), e.target_id.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("DeleteTeam", apac.id.as_str()),
            ("UpdateTeam", billing.id.as_str()),
            ("CreateTeam", apac.id.as_str()),
            ("CreateTeam", sales.id.as_str()),
            ("CreateTeam", billing.id.as_str()),
        ]
    );
    assert_eq!(audit.entries[4].request_id, request_id);
}

on_each_backend!(users_belong_only_to_teams_of_their_own_tenant);
async fn users_belong_only_to_teams_of_their_own_tenant(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.directory_client().await;
    let admin = stack.token(stack.admin);
    let supervisor = stack.token(stack.supervisor);
    let sales = create_team(&mut client, &admin, "Sales").await;
    let billing = create_team(&mut client, &admin, "Billing").await;
    let mut both = vec![sales.id.clone(), billing.id.clone()];
    both.sort();
    // The parent tenant's administrator has teams of its own.
    let holding_admin = Uuid::new_v4();
    stack
        .directory
        .ensure_user(
            holding_admin,
            stack.parent,
            "Hal",
            "hal@holding.test",
            &[dir::Role::Administrator],
        )
        .await
        .unwrap();
    let holding_team = create_team(&mut client, &stack.token(holding_admin), "Sales").await;
    // For Acme's administrator, the parent's team does not exist.
    let err = rename_refused(
        &mut client,
        rename_team(&holding_team.id, "Mine now", &["display_name"]),
        &admin,
    )
    .await;
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = client
        .delete_team(authed(delete_team(&holding_team.id), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // Duplicates and case do not matter; the answer lists each team once, ascending.
    let request_id = Uuid::new_v4().to_string();
    let create = dir::CreateUserRequest {
        request_id: request_id.clone(),
        user: Some(dir::User {
            team_ids: vec![
                sales.id.to_uppercase(),
                billing.id.clone(),
                sales.id.clone(),
            ],
            ..new_user("Zoe", "zoe@acme.test", &[dir::Role::Agent])
        }),
    };
    let zoe = client
        .create_user(authed(create.clone(), &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(zoe.team_ids, both);
    let retry = client
        .create_user(authed(create, &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(retry, zoe);
    let got = client
        .get_user(authed(
            dir::GetUserRequest {
                user_id: zoe.id.clone(),
            },
            &stack.token(stack.agent),
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(got.team_ids, both);

    // Unknown teams, another tenant's teams and too many teams are refused, naming them.
    let unknown = Uuid::new_v4().to_string();
    let refusals = [
        (vec![sales.id.clone(), unknown.clone()], unknown.clone()),
        (vec![holding_team.id.clone()], holding_team.id.clone()),
        (vec!["sales".to_owned()], "\"sales\"".to_owned()),
        (vec![sales.id.clone(); 21], "at most 20 teams".to_owned()),
        (
            vec![unknown.clone(); 100_000],
            "at most 20 teams (100000 given)".to_owned(),
        ),
    ];
    for (n, (team_ids, named)) in refusals.into_iter().enumerate() {
        let started = Instant::now();
        let err = client
            .create_user(authed(
                dir::CreateUserRequest {
                    request_id: Uuid::new_v4().to_string(),
                    user: Some(dir::User {
                        team_ids,
                        ..new_user("Eve", &format!("eve{n}@acme.test"), &[dir::Role::Agent])
                    }),
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), violated_field(&err).as_str()),
            (Code::InvalidArgument, "user.team_ids"),
            "{err:?}"
        );
        assert!(err.message().contains(&named), "{}", err.message());
        assert!(started.elapsed() < Duration::from_secs(5), "{n}");
    }
    let listed = client
        .list_users(authed(dir::ListUsersRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(
        listed.iter().all(|u| !u.email.starts_with("eve")),
        "a refused user was created"
    );

    // UpdateUser replaces the teams (teamIds or team_ids); other updates keep them.
    let update = |team_ids: Vec<String>, paths: &[&str]| dir::UpdateUserRequest {
        request_id: Uuid::new_v4().to_string(),
        user: Some(dir::User {
            id: stack.agent.to_string(),
            team_ids,
            display_name: "Aga Agent".to_owned(),
            ..Default::default()
        }),
        update_mask: mask(paths),
    };
    let aga = client
        .update_user(authed(update(vec![sales.id.clone()], &["teamIds"]), &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(aga.team_ids, vec![sales.id.clone()]);
    let aga = client
        .update_user(authed(update(Vec::new(), &["displayName"]), &admin))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (aga.display_name.as_str(), aga.team_ids.clone()),
        ("Aga Agent", vec![sales.id.clone()])
    );
    let err = client
        .update_user(authed(
            update(vec![holding_team.id.clone()], &["team_ids"]),
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "user.team_ids");
    assert!(err.message().contains(&holding_team.id), "{err:?}");

    // ListUsers by team, for supervisors; another tenant's team is NOT_FOUND.
    let members = |team_id: &str| dir::ListUsersRequest {
        team_id: team_id.to_owned(),
        ..Default::default()
    };
    let names = |users: Vec<dir::User>| {
        users
            .into_iter()
            .map(|u| (u.display_name, u.team_ids))
            .collect::<Vec<_>>()
    };
    let of_sales = client
        .list_users(authed(members(&sales.id), &supervisor))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(
        names(of_sales),
        [
            ("Aga Agent".to_owned(), vec![sales.id.clone()]),
            ("Zoe".to_owned(), both.clone())
        ]
    );
    for team_id in [&holding_team.id, &unknown] {
        let err = client
            .list_users(authed(members(team_id), &supervisor))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::NotFound, format!("team {team_id} not found").as_str())
        );
    }
    let err = client
        .list_users(authed(members("sales"), &supervisor))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "team_id");

    // A deleted team leaves its members' lists.
    client
        .delete_team(authed(delete_team(&sales.id), &admin))
        .await
        .unwrap();
    let all = client
        .list_users(authed(dir::ListUsersRequest::default(), &supervisor))
        .await
        .unwrap()
        .into_inner()
        .users;
    let teams_of = |name: &str| {
        all.iter()
            .find(|u| u.display_name == name)
            .map(|u| u.team_ids.clone())
            .unwrap()
    };
    assert_eq!(teams_of("Zoe"), vec![billing.id.clone()]);
    assert!(teams_of("Aga Agent").is_empty());
}

on_each_backend!(services_learn_team_members_on_the_internal_listener);
async fn services_learn_team_members_on_the_internal_listener(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut client = stack.directory_client().await;
    let admin = stack.token(stack.admin);
    let team = create_team(&mut client, &admin, "Night shift").await;
    let mut members = Vec::new();
    for user in [stack.agent, stack.supervisor, stack.analyst] {
        client
            .update_user(authed(
                dir::UpdateUserRequest {
                    request_id: Uuid::new_v4().to_string(),
                    user: Some(dir::User {
                        id: user.to_string(),
                        team_ids: vec![team.id.clone()],
                        ..Default::default()
                    }),
                    update_mask: mask(&["team_ids"]),
                },
                &admin,
            ))
            .await
            .unwrap();
        members.push(user.to_string());
    }
    members.sort();

    let mut internal = stack.internal_as_routing();
    let list =
        |tenant: Uuid, team_id: &str, page_token: String| dir_internal::ListTeamMembersRequest {
            tenant_id: tenant.to_string(),
            team_id: team_id.to_owned(),
            page_size: 2,
            page_token,
        };
    let first = internal
        .list_team_members(list(stack.tenant, &team.id, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.user_ids.len(), 2);
    let second = internal
        .list_team_members(list(stack.tenant, &team.id, first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert!(second.next_page_token.is_empty());
    assert_eq!([first.user_ids, second.user_ids].concat(), members);

    // GetUsers tells each user's teams.
    let users = internal
        .get_users(get_users(stack.tenant, &[stack.agent, stack.admin]))
        .await
        .unwrap()
        .into_inner()
        .users;
    let teams_of = |id: Uuid| {
        users
            .iter()
            .find(|u| u.id == id.to_string())
            .map(|u| u.team_ids.clone())
            .unwrap()
    };
    assert_eq!(teams_of(stack.agent), vec![team.id.clone()]);
    assert!(teams_of(stack.admin).is_empty());

    // The team asked for in another tenant, or one that does not exist: NOT_FOUND alike.
    for (tenant, team_id) in [
        (stack.parent, team.id.clone()),
        (stack.tenant, Uuid::new_v4().to_string()),
    ] {
        let err = internal
            .list_team_members(list(tenant, &team_id, String::new()))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::NotFound, format!("team {team_id} not found").as_str())
        );
    }
    let err = internal
        .list_team_members(list(stack.tenant, "night", String::new()))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "team_id");

    // Tenants' users never ask: not as a signed user, not through the public listener.
    let err = stack
        .internal_as(IDENTITY_SECRET, stack.administrator_identity())
        .list_team_members(list(stack.tenant, &team.id, String::new()))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::PermissionDenied, "ROLE_REQUIRED")
    );
    let err = InternalClient::new(stack.channel().await)
        .list_team_members(authed(list(stack.tenant, &team.id, String::new()), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}
