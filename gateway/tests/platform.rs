//! Platform operators through the real gateway, on SQLite and (when
//! `SWITCHBOARD_TEST_POSTGRES_URL` is set) PostgreSQL: an operator sets up a tenant and its
//! first administrator, is refused everything else, and a parent tenant's administrator
//! creates users in its descendants only.
//!
//! Every service behind the gateway is a closed port: a call the gateway forwarded would
//! fail with UNAVAILABLE, so PERMISSION_DENIED shows the gateway refused it itself.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use gateway::{Config, Directory, OperatorKey};
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::directory::v1 as dir;
use switchboard_proto::reporting::v1 as rep;
use switchboard_proto::routing::v1 as routing;
use switchboard_server_kit::ShutdownSignal;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

const IDENTITY_SECRET: &str = "platform-test-identity-secret";
const JWT_SECRET: &str = "platform-test-jwt-secret-0123456789";
const OPERATOR_KEY: &str = "sbo_platformtestoperatorkey0123456789abcdefXYZ";

/// The gateway on a test directory: a top-level tenant "Holding" with children "Acme" and
/// "Beta", and "Acme EU" under "Acme", each with an administrator.
struct Stack {
    channel: Channel,
    directory: Directory,
    holding: Uuid,
    acme: Uuid,
    beta: Uuid,
    acme_eu: Uuid,
    holding_admin: Uuid,
    acme_admin: Uuid,
    shutdown: ShutdownSignal,
    _db: common::TestDirectory,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

impl Stack {
    async fn start(db: common::TestDirectory) -> Stack {
        let directory = db.directory.clone();
        let (holding, acme, beta, acme_eu) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        directory
            .ensure_tenant(holding, None, "Holding")
            .await
            .unwrap();
        directory
            .ensure_tenant(acme, Some(holding), "Acme")
            .await
            .unwrap();
        directory
            .ensure_tenant(beta, Some(holding), "Beta")
            .await
            .unwrap();
        directory
            .ensure_tenant(acme_eu, Some(acme), "Acme EU")
            .await
            .unwrap();
        let (holding_admin, acme_admin) = (Uuid::new_v4(), Uuid::new_v4());
        for (id, tenant, email) in [
            (holding_admin, holding, "admin@holding.test"),
            (acme_admin, acme, "admin@acme.test"),
        ] {
            directory
                .ensure_user(id, tenant, "Admin", email, &[dir::Role::Administrator])
                .await
                .unwrap();
        }
        let closed = format!("http://{}", closed_port().await);
        let config = Config {
            metrics_listen: None,
            database_url: db.url.clone(),
            identity_secret: IDENTITY_SECRET.to_owned(),
            upstreams: gateway::Upstreams {
                routing_url: closed.clone(),
                conversation_url: closed.clone(),
                reporting_url: closed,
            },
            auth: gateway::AuthConfig {
                hs256_secret: Some(JWT_SECRET.to_owned()),
                operators: vec![OperatorKey {
                    name: "ops".to_owned(),
                    sha256: gateway::operator_key_hash(OPERATOR_KEY),
                }],
                ..Default::default()
            },
            ..Config::default()
        };
        let listeners = common::loopback_listeners().await;
        let addr = listeners.public.local_addr().unwrap();
        let shutdown = ShutdownSignal::new();
        tokio::spawn(gateway::serve(config, listeners, shutdown.clone()));
        // connect() retries until the gateway listens; the listener is bound already.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Stack {
            channel,
            directory,
            holding,
            acme,
            beta,
            acme_eu,
            holding_admin,
            acme_admin,
            shutdown,
            _db: db,
        }
    }

    fn platform(&self) -> dir::platform_service_client::PlatformServiceClient<Channel> {
        dir::platform_service_client::PlatformServiceClient::new(self.channel.clone())
    }

    fn directory_client(&self) -> dir::directory_service_client::DirectoryServiceClient<Channel> {
        dir::directory_service_client::DirectoryServiceClient::new(self.channel.clone())
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
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    request
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn operator<T>(message: T) -> Request<T> {
    with_key(message, OPERATOR_KEY)
}

fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

fn rid() -> String {
    Uuid::new_v4().to_string()
}

fn new_tenant(request_id: &str, name: &str) -> dir::CreateTopLevelTenantRequest {
    dir::CreateTopLevelTenantRequest {
        request_id: request_id.to_owned(),
        tenant: Some(dir::Tenant {
            display_name: name.to_owned(),
            ..Default::default()
        }),
    }
}

fn new_admin(tenant: &str, email: &str) -> dir::CreateTenantAdministratorRequest {
    dir::CreateTenantAdministratorRequest {
        request_id: rid(),
        tenant_id: tenant.to_owned(),
        user: Some(dir::User {
            display_name: "Grace Admin".to_owned(),
            email: email.to_owned(),
            ..Default::default()
        }),
    }
}

on_each_backend!(an_operator_sets_up_a_tenant_whose_administrator_takes_over);
async fn an_operator_sets_up_a_tenant_whose_administrator_takes_over(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut platform = stack.platform();
    let request_id = rid();
    let tenant = platform
        .create_top_level_tenant(operator(new_tenant(&request_id, "Globex")))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(tenant.parent_tenant_id, "");
    assert_eq!(tenant.display_name, "Globex");
    let retry = platform
        .create_top_level_tenant(operator(new_tenant(&request_id, "Globex")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        retry.tenant.unwrap(),
        tenant,
        "a retry creates nothing more"
    );

    let listed = platform
        .list_top_level_tenants(operator(dir::ListTopLevelTenantsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.tenants.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec![tenant.id.as_str(), &stack.holding.to_string()]);
    let first = platform
        .list_top_level_tenants(operator(dir::ListTopLevelTenantsRequest {
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let second = platform
        .list_top_level_tenants(operator(dir::ListTopLevelTenantsRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.tenants, second.tenants, second.next_page_token),
        (
            listed.tenants[..1].to_vec(),
            listed.tenants[1..].to_vec(),
            String::new()
        )
    );

    let created = platform
        .create_tenant_administrator(operator(new_admin(&tenant.id, "grace@globex.test")))
        .await
        .unwrap()
        .into_inner();
    let admin = created.user.unwrap();
    assert_eq!(admin.tenant_id, tenant.id);
    assert_eq!(admin.roles, vec![dir::Role::Administrator as i32]);
    assert!(admin.active);
    assert!(created.api_key_secret.starts_with("sbk_"));
    assert_eq!(created.api_key.unwrap().tenant_id, tenant.id);

    // The administrator's key works in the new tenant and nowhere else.
    let key = created.api_key_secret;
    let mut directory = stack.directory_client();
    let me = directory
        .get_current_identity(with_key(dir::GetCurrentIdentityRequest {}, &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.tenant_id, tenant.id);
    assert!(me.tenant_ancestry.is_empty());
    assert_eq!(me.roles, vec![dir::Role::Administrator as i32]);
    let agent = directory
        .create_user(with_key(
            dir::CreateUserRequest {
                request_id: rid(),
                user: Some(dir::User {
                    display_name: "Alex Agent".to_owned(),
                    email: "alex@globex.test".to_owned(),
                    roles: vec![dir::Role::Agent as i32],
                    ..Default::default()
                }),
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(agent.tenant_id, tenant.id);
    let stored = stack.directory.user(&agent.id).await.unwrap().unwrap();
    assert_eq!(stored.tenant_id, tenant.id);

    // The tenant's audit log shows what the operator did.
    let audit = directory
        .list_audit_log_entries(with_key(dir::ListAuditLogEntriesRequest::default(), &key))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let by_operator: Vec<&str> = audit
        .iter()
        .filter(|e| e.actor_id == "operator:ops")
        .map(|e| e.method.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        by_operator,
        vec!["CreateTenantAdministrator", "CreateTopLevelTenant"]
    );

    // Once the tenant has an administrator, the operator no longer acts inside it.
    let err = platform
        .create_tenant_administrator(operator(new_admin(&tenant.id, "mallory@globex.test")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(reason(&err), "WRONG_STATE");
    // Child tenants and unknown ones are out of an operator's reach.
    for other in [stack.acme.to_string(), Uuid::new_v4().to_string()] {
        let err = platform
            .create_tenant_administrator(operator(new_admin(&other, "x@acme.test")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{other}: {err:?}");
    }
    // Operators create top-level tenants only.
    let mut child = new_tenant(&rid(), "Globex Child");
    child.tenant.as_mut().unwrap().parent_tenant_id = tenant.id.clone();
    let err = platform
        .create_top_level_tenant(operator(child))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

on_each_backend!(concurrent_first_administrators_make_exactly_one);
/// Several operators create a tenant's first administrator at the same moment (different
/// request_ids): exactly one succeeds, the others are told the tenant already has one.
async fn concurrent_first_administrators_make_exactly_one(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let tenant = stack
        .platform()
        .create_top_level_tenant(operator(new_tenant(&rid(), "Initech")))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let mut platform = stack.platform();
            let request = new_admin(&tenant.id, &format!("admin{i}@initech.test"));
            tokio::spawn(async move {
                platform
                    .create_tenant_administrator(operator(request))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => created += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
            }
        }
    }
    assert_eq!(created, 1, "exactly one first administrator");
}

on_each_backend!(an_operator_is_refused_everything_but_the_platform);
async fn an_operator_is_refused_everything_but_the_platform(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let denied = |what: &str, result: Result<(), Status>| {
        let err = result.expect_err(what);
        assert_eq!(err.code(), Code::PermissionDenied, "{what}: {err:?}");
        assert_eq!(reason(&err), "ROLE_REQUIRED", "{what}");
    };
    let mut conversations =
        conv::conversation_service_client::ConversationServiceClient::new(stack.channel.clone());
    denied(
        "ListConversations",
        conversations
            .list_conversations(operator(conv::ListConversationsRequest::default()))
            .await
            .map(drop),
    );
    denied(
        "GetConversation",
        conversations
            .get_conversation(operator(conv::GetConversationRequest {
                conversation_id: Uuid::new_v4().to_string(),
                ..Default::default()
            }))
            .await
            .map(drop),
    );
    let mut queues = routing::queue_service_client::QueueServiceClient::new(stack.channel.clone());
    denied(
        "ListQueues",
        queues
            .list_queues(operator(routing::ListQueuesRequest::default()))
            .await
            .map(drop),
    );
    let mut agents = routing::agent_service_client::AgentServiceClient::new(stack.channel.clone());
    denied(
        "StreamOffers",
        agents
            .stream_offers(operator(routing::StreamOffersRequest::default()))
            .await
            .map(drop),
    );
    let mut reports =
        rep::reporting_service_client::ReportingServiceClient::new(stack.channel.clone());
    denied(
        "GetCreatedClosedReport",
        reports
            .get_created_closed_report(operator(rep::GetCreatedClosedReportRequest::default()))
            .await
            .map(drop),
    );
    // A tenant's directory, its users included, is the tenant's own.
    let mut directory = stack.directory_client();
    denied(
        "GetCurrentIdentity",
        directory
            .get_current_identity(operator(dir::GetCurrentIdentityRequest {}))
            .await
            .map(drop),
    );
    denied(
        "GetUser",
        directory
            .get_user(operator(dir::GetUserRequest {
                user_id: stack.acme_admin.to_string(),
            }))
            .await
            .map(drop),
    );
    denied(
        "CreateUser",
        directory
            .create_user(operator(dir::CreateUserRequest {
                request_id: rid(),
                user: Some(dir::User {
                    tenant_id: stack.acme.to_string(),
                    display_name: "Sneaky".to_owned(),
                    email: "sneaky@acme.test".to_owned(),
                    roles: vec![dir::Role::Administrator as i32],
                    ..Default::default()
                }),
            }))
            .await
            .map(drop),
    );
    assert!(
        stack
            .directory
            .user(&stack.acme_admin.to_string())
            .await
            .unwrap()
            .is_some()
    );
}

on_each_backend!(tenant_principals_cannot_call_the_platform);
async fn tenant_principals_cannot_call_the_platform(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut platform = stack.platform();
    let admin = stack.token(stack.holding_admin);
    let err = platform
        .create_top_level_tenant(authed(new_tenant(&rid(), "Rogue"), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(reason(&err), "ROLE_REQUIRED");
    let err = platform
        .list_top_level_tenants(authed(dir::ListTopLevelTenantsRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // An administrator's API key neither.
    let key = stack
        .directory_client()
        .create_api_key(authed(
            dir::CreateApiKeyRequest {
                request_id: rid(),
                api_key: Some(dir::ApiKey {
                    display_name: "Admin script".to_owned(),
                    roles: vec![dir::Role::Administrator as i32],
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let err = platform
        .create_tenant_administrator(with_key(
            new_admin(&stack.holding.to_string(), "x@holding.test"),
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let top_level = stack
        .platform()
        .list_top_level_tenants(operator(dir::ListTopLevelTenantsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .tenants;
    assert_eq!(top_level.len(), 1, "nothing was created: {top_level:?}");
}

on_each_backend!(a_parent_administrator_creates_users_in_descendants_only);
async fn a_parent_administrator_creates_users_in_descendants_only(db: common::TestDirectory) {
    let stack = Stack::start(db).await;
    let mut directory = stack.directory_client();
    let create = |tenant: Uuid, email: &str| dir::CreateUserRequest {
        request_id: rid(),
        user: Some(dir::User {
            tenant_id: tenant.to_string(),
            display_name: "Nia New".to_owned(),
            email: email.to_owned(),
            roles: vec![dir::Role::Administrator as i32],
            ..Default::default()
        }),
    };
    let acme_admin = stack.token(stack.acme_admin);
    // A grandchild through its parent's administrator, and a child through the root's.
    let in_grandchild = directory
        .create_user(authed(
            create(stack.acme_eu, "nia@acme.eu.test"),
            &acme_admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(in_grandchild.tenant_id, stack.acme_eu.to_string());
    let in_child = directory
        .create_user(authed(
            create(stack.beta, "nia@beta.test"),
            &stack.token(stack.holding_admin),
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(in_child.tenant_id, stack.beta.to_string());
    // The new administrator signs in to the child and sees the change in its log.
    let grandchild_admin = stack.token(Uuid::parse_str(&in_grandchild.id).unwrap());
    let me = directory
        .get_current_identity(authed(dir::GetCurrentIdentityRequest {}, &grandchild_admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.tenant_id, stack.acme_eu.to_string());
    let audit = directory
        .list_audit_log_entries(authed(
            dir::ListAuditLogEntriesRequest::default(),
            &grandchild_admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor_id, stack.acme_admin.to_string());
    assert_eq!(audit[0].target_id, in_grandchild.id);

    // A sibling, an ancestor and an unknown tenant are not found.
    for (what, tenant) in [
        ("sibling", stack.beta),
        ("parent", stack.holding),
        ("unknown", Uuid::new_v4()),
    ] {
        let err = directory
            .create_user(authed(
                create(tenant, &format!("{what}@x.test")),
                &acme_admin,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{what}: {err:?}");
    }
    // A child's administrator cannot reach up either.
    let err = directory
        .create_user(authed(
            create(stack.acme, "up@acme.test"),
            &grandchild_admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
