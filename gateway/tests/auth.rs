//! Authentication against a real directory: bearer tokens of known, unknown and inactive
//! users, API keys that are good, revoked or malformed, and platform operator keys. The
//! causes checked here go to the server log; clients get one message for all of them.

mod common;

use std::time::Duration;

use gateway::auth::{Authenticator, Caller, Operator};
use gateway::error::UNAUTHENTICATED_MESSAGE;
use gateway::store::Mutation;
use gateway::{AuthConfig, GatewayError, OperatorKey};
use http::{HeaderMap, HeaderValue};
use switchboard_proto::directory::v1::{CreateUserResponse, Role, SupervisorAction};
use switchboard_server_kit::idempotency::Fingerprint;
use switchboard_server_kit::{PrincipalKind, Role as KitRole};
use uuid::Uuid;

const SECRET: &str = "auth-test-secret-0123456789";
const OPERATOR_KEY: &str = "sbo_0123456789abcdefghijklmnopqrstuvwxyzOPERATOR";

struct Fixture {
    auth: Authenticator,
    root: Uuid,
    tenant: Uuid,
    user: Uuid,
    key: Uuid,
    /// Last: its database is dropped after the authenticator's pool.
    db: common::TestDirectory,
}

async fn fixture(db: common::TestDirectory) -> Fixture {
    let dir = &db.directory;
    let (root, tenant, user, key) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    dir.ensure_tenant(root, None, "Holding").await.unwrap();
    dir.ensure_tenant(tenant, Some(root), "Acme").await.unwrap();
    dir.ensure_user(
        user,
        tenant,
        "Sam Supervisor",
        "sam@acme.test",
        &[Role::Supervisor, Role::Agent],
    )
    .await
    .unwrap();
    dir.ensure_api_key(key, tenant, "Chat bot", &[Role::Bot], &good_secret(key))
        .await
        .unwrap();
    dir.set_enabled_supervisor_actions(
        tenant,
        &[SupervisorAction::Monitor, SupervisorAction::ForceClose],
    )
    .await
    .unwrap();
    let config = AuthConfig {
        hs256_secret: Some(SECRET.to_owned()),
        operators: vec![OperatorKey {
            name: "ops".to_owned(),
            sha256: gateway::operator_key_hash(OPERATOR_KEY),
        }],
        ..AuthConfig::default()
    };
    let auth = Authenticator::new(&config, dir.clone()).unwrap();
    Fixture {
        auth,
        root,
        tenant,
        user,
        key,
        db,
    }
}

fn good_secret(key: Uuid) -> String {
    gateway::api_key_secret(key, "0123456789abcdefghijklmnopqrstuvwxyzABCD")
}

fn token(user: &str) -> String {
    gateway::mint_hs256_token(
        SECRET,
        "switchboard",
        "switchboard",
        user,
        Duration::from_secs(300),
    )
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn api_key(secret: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::try_from(secret).unwrap());
    headers
}

async fn refusal(fx: &Fixture, headers: &HeaderMap) -> String {
    match fx.auth.authenticate(headers).await {
        Err(GatewayError::Unauthenticated(message)) => message,
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
}

on_each_backend!(a_good_token_gives_the_directory_identity);
async fn a_good_token_gives_the_directory_identity(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let identity = fx
        .auth
        .authenticate(&bearer(&token(&fx.user.to_string())))
        .await
        .unwrap()
        .into_tenant()
        .unwrap();
    assert_eq!(identity.tenant_id, fx.tenant.to_string());
    assert_eq!(identity.tenant_ancestry, vec![fx.root.to_string()]);
    assert_eq!(identity.principal_id, fx.user.to_string());
    assert_eq!(identity.principal_kind, PrincipalKind::User);
    assert_eq!(identity.display_name, "Sam Supervisor");
    assert_eq!(identity.roles, vec![KitRole::Agent, KitRole::Supervisor]);
    assert_eq!(
        identity.enabled_supervisor_actions,
        vec!["monitor", "force_close"]
    );
}

on_each_backend!(role_changes_apply_to_the_next_call);
async fn role_changes_apply_to_the_next_call(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let headers = bearer(&token(&fx.user.to_string()));
    fx.db
        .directory
        .ensure_user(
            fx.user,
            fx.tenant,
            "Sam Supervisor",
            "sam@acme.test",
            &[Role::Analyst],
        )
        .await
        .unwrap();
    let identity = fx
        .auth
        .authenticate(&headers)
        .await
        .unwrap()
        .into_tenant()
        .unwrap();
    assert_eq!(identity.roles, vec![KitRole::Analyst]);
}

on_each_backend!(unknown_and_inactive_users_are_refused_alike);
async fn unknown_and_inactive_users_are_refused_alike(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let unknown = refusal(&fx, &bearer(&token(&Uuid::new_v4().to_string()))).await;
    let not_a_uuid = refusal(&fx, &bearer(&token("admin"))).await;

    // Deactivate through a directory mutation, as UpdateUser does.
    let mut user = fx
        .db
        .directory
        .user(&fx.user.to_string())
        .await
        .unwrap()
        .unwrap();
    user.active = false;
    let mut tx = fx
        .db
        .directory
        .begin(Mutation {
            tenant_id: fx.tenant.to_string(),
            actor_id: "admin".to_owned(),
            method: "/switchboard.directory.v1.DirectoryService/UpdateUser",
            request_id: Uuid::new_v4(),
            fingerprint: Fingerprint::of(&()),
        })
        .await
        .unwrap();
    tx.update_user(&user).await.unwrap();
    tx.finish(&user.id, &CreateUserResponse::default())
        .await
        .unwrap();
    let inactive = refusal(&fx, &bearer(&token(&fx.user.to_string()))).await;

    assert_eq!(unknown, "bearer token subject is not an active user");
    assert_eq!(not_a_uuid, unknown);
    assert_eq!(inactive, unknown);
}

on_each_backend!(bad_tokens_and_headers_are_refused);
async fn bad_tokens_and_headers_are_refused(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let expired = {
        let claims = serde_json::json!({
            "sub": fx.user.to_string(), "iss": "switchboard", "aud": "switchboard",
            "exp": 1_000_000_000,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    assert_eq!(
        refusal(&fx, &bearer(&expired)).await,
        "bearer token expired"
    );
    let wrong_issuer = gateway::mint_hs256_token(
        SECRET,
        "elsewhere",
        "switchboard",
        &fx.user.to_string(),
        Duration::from_secs(60),
    );
    assert_eq!(
        refusal(&fx, &bearer(&wrong_issuer)).await,
        "bearer token issuer not accepted"
    );
    let wrong_audience = gateway::mint_hs256_token(
        SECRET,
        "switchboard",
        "elsewhere",
        &fx.user.to_string(),
        Duration::from_secs(60),
    );
    assert_eq!(
        refusal(&fx, &bearer(&wrong_audience)).await,
        "bearer token audience not accepted"
    );
    let forged = gateway::mint_hs256_token(
        "not-the-secret-0123456789",
        "switchboard",
        "switchboard",
        &fx.user.to_string(),
        Duration::from_secs(60),
    );
    assert_eq!(
        refusal(&fx, &bearer(&forged)).await,
        "bearer token signature does not verify"
    );

    let mut basic = HeaderMap::new();
    basic.insert(
        "authorization",
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    assert!(refusal(&fx, &basic).await.contains("Bearer"));
    assert!(
        refusal(&fx, &HeaderMap::new())
            .await
            .starts_with("missing credentials")
    );
}

on_each_backend!(a_good_api_key_gives_the_key_identity);
async fn a_good_api_key_gives_the_key_identity(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let identity = fx
        .auth
        .authenticate(&api_key(&good_secret(fx.key)))
        .await
        .unwrap()
        .into_tenant()
        .unwrap();
    assert_eq!(identity.principal_id, fx.key.to_string());
    assert_eq!(identity.principal_kind, PrincipalKind::ApiKey);
    assert_eq!(identity.display_name, "Chat bot");
    assert_eq!(identity.roles, vec![KitRole::Bot]);
    assert_eq!(identity.tenant_id, fx.tenant.to_string());
    assert_eq!(identity.tenant_ancestry, vec![fx.root.to_string()]);
}

on_each_backend!(wrong_and_malformed_api_keys_get_one_message);
async fn wrong_and_malformed_api_keys_get_one_message(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let secret = good_secret(fx.key);
    let wrong_secret = gateway::api_key_secret(fx.key, &"x".repeat(40));
    let unknown_key = good_secret(Uuid::new_v4());
    let truncated = &secret[..secret.len() - 20];
    for bad in [
        wrong_secret.as_str(),
        unknown_key.as_str(),
        truncated,
        "sbk_nope",
        "hello",
    ] {
        assert_eq!(
            refusal(&fx, &api_key(bad)).await,
            "invalid api key",
            "{bad}"
        );
    }
}

on_each_backend!(a_revoked_api_key_is_refused);
async fn a_revoked_api_key_is_refused(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let mut tx = fx
        .db
        .directory
        .begin(Mutation {
            tenant_id: fx.tenant.to_string(),
            actor_id: "admin".to_owned(),
            method: "/switchboard.directory.v1.DirectoryService/RevokeApiKey",
            request_id: Uuid::new_v4(),
            fingerprint: Fingerprint::of(&()),
        })
        .await
        .unwrap();
    tx.revoke_api_key(&fx.key.to_string(), 1).await.unwrap();
    tx.finish(&fx.key.to_string(), &CreateUserResponse::default())
        .await
        .unwrap();
    assert_eq!(
        refusal(&fx, &api_key(&good_secret(fx.key))).await,
        "api key revoked"
    );
}

on_each_backend!(every_refusal_tells_the_client_the_same);
async fn every_refusal_tells_the_client_the_same(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({
            "sub": fx.user.to_string(), "iss": "switchboard", "aud": "switchboard",
            "exp": 1_000_000_000,
        }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let forged = gateway::mint_hs256_token(
        "not-the-secret-0123456789",
        "switchboard",
        "switchboard",
        &fx.user.to_string(),
        Duration::from_secs(60),
    );
    let unknown_key = good_secret(Uuid::new_v4());
    let revoked = Uuid::new_v4();
    fx.db
        .directory
        .ensure_api_key(
            revoked,
            fx.tenant,
            "Old bot",
            &[Role::Bot],
            &good_secret(revoked),
        )
        .await
        .unwrap();
    let mut tx = fx
        .db
        .directory
        .begin(Mutation {
            tenant_id: fx.tenant.to_string(),
            actor_id: "admin".to_owned(),
            method: "/switchboard.directory.v1.DirectoryService/RevokeApiKey",
            request_id: Uuid::new_v4(),
            fingerprint: Fingerprint::of(&()),
        })
        .await
        .unwrap();
    tx.revoke_api_key(&revoked.to_string(), 1).await.unwrap();
    tx.finish(&revoked.to_string(), &CreateUserResponse::default())
        .await
        .unwrap();

    let cases = [
        ("bad signature", bearer(&forged)),
        ("expired token", bearer(&expired)),
        ("unknown api key", api_key(&unknown_key)),
        ("revoked api key", api_key(&good_secret(revoked))),
        ("unknown operator key", api_key(&format!("{OPERATOR_KEY}x"))),
        ("no credentials", HeaderMap::new()),
    ];
    let mut causes = Vec::new();
    for (what, headers) in &cases {
        let err = fx.auth.authenticate(headers).await.unwrap_err();
        let GatewayError::Unauthenticated(cause) = &err else {
            panic!("{what}: expected UNAUTHENTICATED, got {err:?}");
        };
        causes.push(cause.clone());
        let status = err.into_status();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{what}");
        assert_eq!(status.message(), UNAUTHENTICATED_MESSAGE, "{what}");
    }
    // The log still tells them apart.
    causes.sort();
    causes.dedup();
    assert_eq!(causes.len(), cases.len(), "{causes:?}");
}

on_each_backend!(an_operator_key_gives_an_operator_and_no_tenant);
async fn an_operator_key_gives_an_operator_and_no_tenant(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let caller = fx.auth.authenticate(&api_key(OPERATOR_KEY)).await.unwrap();
    assert_eq!(
        caller,
        Caller::Operator(Operator {
            name: "ops".to_owned()
        })
    );
    assert_eq!(caller.into_tenant(), None);
    // A bearer token cannot name an operator, nor an operator key pass as a tenant key.
    refusal(&fx, &bearer(&token("operator:ops"))).await;
    assert_eq!(
        refusal(&fx, &api_key(&OPERATOR_KEY.replace("sbo_", "sbk_"))).await,
        "invalid api key"
    );
}

on_each_backend!(unusable_operator_configuration_stops_the_gateway);
async fn unusable_operator_configuration_stops_the_gateway(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let good_hash = gateway::operator_key_hash(OPERATOR_KEY);
    for (name, sha256) in [
        ("", good_hash.as_str()),
        ("ops", "not-a-hash"),
        ("ops", &good_hash[..63]),
    ] {
        let config = AuthConfig {
            operators: vec![OperatorKey {
                name: name.to_owned(),
                sha256: sha256.to_owned(),
            }],
            ..AuthConfig::default()
        };
        assert!(
            matches!(
                Authenticator::new(&config, fx.db.directory.clone()),
                Err(GatewayError::Config(_))
            ),
            "{name:?} {sha256:?}"
        );
    }
    let twice = AuthConfig {
        operators: vec![
            OperatorKey {
                name: "ops".to_owned(),
                sha256: good_hash.clone(),
            },
            OperatorKey {
                name: "ops".to_owned(),
                sha256: good_hash.to_uppercase(),
            },
        ],
        ..AuthConfig::default()
    };
    assert!(Authenticator::new(&twice, fx.db.directory.clone()).is_err());
}

// ---------------------------------------------------------------------------------------
// The caches: a repeated credential reads no database; writes apply to the next call.

fn mutation(fx: &Fixture, method: &'static str) -> Mutation {
    Mutation {
        tenant_id: fx.tenant.to_string(),
        actor_id: "admin".to_owned(),
        method,
        request_id: Uuid::new_v4(),
        fingerprint: Fingerprint::of(&()),
    }
}

/// Deactivates the fixture's user and revokes its key in one directory mutation of
/// `directory`, as UpdateUser and RevokeApiKey do.
async fn deactivate_and_revoke(fx: &Fixture, directory: &gateway::Directory) {
    let mut tx = directory
        .begin(mutation(
            fx,
            "/switchboard.directory.v1.DirectoryService/UpdateUser",
        ))
        .await
        .unwrap();
    let mut user = tx.user(&fx.user.to_string()).await.unwrap().unwrap();
    user.active = false;
    tx.update_user(&user).await.unwrap();
    tx.revoke_api_key(&fx.key.to_string(), 1).await.unwrap();
    tx.finish(&user.id, &CreateUserResponse::default())
        .await
        .unwrap();
}

on_each_backend!(a_repeated_credential_reads_no_database);
async fn a_repeated_credential_reads_no_database(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let dir = &fx.db.directory;
    for headers in [
        bearer(&token(&fx.user.to_string())),
        api_key(&good_secret(fx.key)),
    ] {
        let first = fx.auth.authenticate(&headers).await.unwrap();
        let before = dir.db_uses();
        let second = fx.auth.authenticate(&headers).await.unwrap();
        assert_eq!(
            dir.db_uses(),
            before,
            "the second call was answered from memory"
        );
        assert_eq!(second, first);
    }
    // A wrong secret for a known key is never taken for the cached one.
    let wrong = gateway::api_key_secret(fx.key, "WRONG456789abcdefghijklmnopqrstuvwxyzABCD");
    assert_eq!(refusal(&fx, &api_key(&wrong)).await, "invalid api key");
}

on_each_backend!(directory_writes_apply_to_the_next_call);
async fn directory_writes_apply_to_the_next_call(db: common::TestDirectory) {
    let fx = fixture(db).await;
    let dir = &fx.db.directory;
    let user_headers = bearer(&token(&fx.user.to_string()));
    let key_headers = api_key(&good_secret(fx.key));
    let identity = |headers: &HeaderMap| {
        let headers = headers.clone();
        let auth = &fx.auth;
        async move {
            auth.authenticate(&headers)
                .await
                .unwrap()
                .into_tenant()
                .unwrap()
        }
    };
    identity(&user_headers).await;
    identity(&key_headers).await;

    // Roles and settings, through a directory mutation as UpdateUser and
    // UpdateTenantSettings do.
    let mut tx = dir
        .begin(mutation(
            &fx,
            "/switchboard.directory.v1.DirectoryService/UpdateUser",
        ))
        .await
        .unwrap();
    let mut user = tx.user(&fx.user.to_string()).await.unwrap().unwrap();
    user.roles = vec![Role::Agent];
    user.display_name = "Sam Agent".to_owned();
    tx.update_user(&user).await.unwrap();
    let mut settings = tx.tenant_settings(&fx.tenant.to_string()).await.unwrap();
    settings.enabled_supervisor_actions = vec![SupervisorAction::Join];
    tx.put_settings(&settings).await.unwrap();
    tx.finish(&user.id, &CreateUserResponse::default())
        .await
        .unwrap();
    let changed = identity(&user_headers).await;
    assert_eq!(changed.roles, vec![KitRole::Agent]);
    assert_eq!(changed.display_name, "Sam Agent");
    assert_eq!(changed.enabled_supervisor_actions, vec!["join"]);
    assert_eq!(
        identity(&key_headers).await.enabled_supervisor_actions,
        vec!["join"]
    );

    // The seeding helpers too.
    dir.ensure_user(fx.user, fx.tenant, "Sam", "sam@acme.test", &[Role::Analyst])
        .await
        .unwrap();
    assert_eq!(identity(&user_headers).await.roles, vec![KitRole::Analyst]);

    deactivate_and_revoke(&fx, dir).await;
    assert_eq!(
        refusal(&fx, &user_headers).await,
        "bearer token subject is not an active user"
    );
    assert_eq!(refusal(&fx, &key_headers).await, "api key revoked");
}

on_each_backend!(another_replicas_writes_apply_within_the_ttl);
/// A write through another directory (another gateway replica) does not reach this one's
/// caches: this one sees it once its entries expire.
async fn another_replicas_writes_apply_within_the_ttl(db: common::TestDirectory) {
    const TTL: Duration = Duration::from_millis(1_500);
    let fx = fixture(db).await;
    let replica_directory = fx.db.directory.clone().with_cache(TTL, 100);
    let config = AuthConfig {
        hs256_secret: Some(SECRET.to_owned()),
        cache_ttl_ms: TTL.as_millis() as u64,
        ..AuthConfig::default()
    };
    let replica = Authenticator::new(&config, replica_directory).unwrap();
    let user_headers = bearer(&token(&fx.user.to_string()));
    let key_headers = api_key(&good_secret(fx.key));
    let cached_at = tokio::time::Instant::now();
    replica.authenticate(&user_headers).await.unwrap();
    replica.authenticate(&key_headers).await.unwrap();

    deactivate_and_revoke(&fx, &fx.db.directory).await;
    // The fixture's own authenticator shares the writing directory's caches.
    assert!(fx.auth.authenticate(&key_headers).await.is_err());
    let stale = replica.authenticate(&key_headers).await;
    if cached_at.elapsed() < TTL {
        assert!(
            stale.is_ok(),
            "within the TTL the replica still has its copy"
        );
    }

    let deadline = cached_at + TTL + Duration::from_secs(20);
    loop {
        let user = replica.authenticate(&user_headers).await;
        let key = replica.authenticate(&key_headers).await;
        if user.is_err() && key.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica still accepts a revoked key or an inactive user long after the TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
