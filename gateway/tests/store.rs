//! The directory store's conformance suite: the same checks on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use gateway::GatewayError;
use gateway::domain::page::page_request;
use gateway::store::{Directory, Mutation, TeamRecord};
use switchboard_proto::directory::v1::{
    CreateUserRequest, CreateUserResponse, Role, SupervisorAction, User,
};
use switchboard_server_kit::idempotency::Fingerprint;
use uuid::Uuid;

fn secret(id: Uuid) -> String {
    gateway::api_key_secret(id, &"k".repeat(40))
}

async fn seeding_twice_changes_nothing(dir: &Directory) {
    let tenant = Uuid::new_v4();
    let user = Uuid::new_v4();
    let key = Uuid::new_v4();
    for _ in 0..2 {
        dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
        dir.ensure_user(
            user,
            tenant,
            "Ada",
            "Ada@Example.com",
            &[Role::Agent, Role::Supervisor],
        )
        .await
        .unwrap();
        dir.ensure_api_key(key, tenant, "Bot", &[Role::Bot], &secret(key))
            .await
            .unwrap();
        dir.set_enabled_supervisor_actions(
            tenant,
            &[SupervisorAction::Monitor, SupervisorAction::ForceClose],
        )
        .await
        .unwrap();
    }
    let page = page_request(0, "").unwrap();
    let (users, next) = dir
        .users(&tenant.to_string(), None, None, &page)
        .await
        .unwrap();
    assert_eq!(users.len(), 1);
    assert!(next.is_empty());
    assert_eq!(users[0].email, "ada@example.com");
    assert_eq!(users[0].roles, vec![Role::Agent, Role::Supervisor]);
    assert!(users[0].active);
    let (keys, _) = dir.api_keys(&tenant.to_string(), &page).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].prefix, &secret(key)[..12]);
    assert!(gateway::domain::api_key::secret_matches(
        &secret(key),
        &keys[0].secret_sha256
    ));
    let settings = dir.tenant_settings(&tenant.to_string()).await.unwrap();
    assert_eq!(
        settings.enabled_supervisor_actions,
        vec![SupervisorAction::Monitor, SupervisorAction::ForceClose]
    );
    assert_eq!(settings.reopen_window, Duration::from_secs(86_400));

    // Seeding again with other values updates the same rows.
    dir.ensure_user(
        user,
        tenant,
        "Ada L.",
        "ada@example.com",
        &[Role::Administrator],
    )
    .await
    .unwrap();
    let stored = dir.user(&user.to_string()).await.unwrap().unwrap();
    assert_eq!(
        (stored.display_name.as_str(), stored.roles.as_slice()),
        ("Ada L.", &[Role::Administrator][..])
    );
    dir.set_enabled_supervisor_actions(tenant, &[])
        .await
        .unwrap();
    assert!(
        dir.tenant_settings(&tenant.to_string())
            .await
            .unwrap()
            .enabled_supervisor_actions
            .is_empty()
    );
}

async fn seeding_refuses_a_taken_email_and_a_foreign_secret(dir: &Directory) {
    let tenant = Uuid::new_v4();
    dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
    dir.ensure_user(Uuid::new_v4(), tenant, "Ada", "ada@x.test", &[Role::Agent])
        .await
        .unwrap();
    let err = dir
        .ensure_user(
            Uuid::new_v4(),
            tenant,
            "Other Ada",
            "ADA@x.test",
            &[Role::Agent],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::AlreadyExists(_)), "{err}");
    let key = Uuid::new_v4();
    let err = dir
        .ensure_api_key(key, tenant, "Bot", &[Role::Bot], &secret(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Config(_)), "{err}");
    assert!(dir.api_key(&key.to_string()).await.unwrap().is_none());
}

async fn ancestry_is_parent_first(dir: &Directory) {
    let root = Uuid::new_v4();
    let child = Uuid::new_v4();
    let grandchild = Uuid::new_v4();
    dir.ensure_tenant(root, None, "Root").await.unwrap();
    dir.ensure_tenant(child, Some(root), "Child").await.unwrap();
    dir.ensure_tenant(grandchild, Some(child), "Grandchild")
        .await
        .unwrap();
    assert_eq!(
        dir.tenant_ancestry(&grandchild.to_string()).await.unwrap(),
        vec![child.to_string(), root.to_string()]
    );
    assert!(
        dir.tenant_ancestry(&root.to_string())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        dir.tenant_ancestry(&Uuid::new_v4().to_string())
            .await
            .unwrap()
            .is_empty()
    );
    let tenant = dir.tenant(&child.to_string()).await.unwrap().unwrap();
    assert_eq!(tenant.parent_tenant_id, Some(root.to_string()));

    let page = page_request(0, "").unwrap();
    let (children, _) = dir.child_tenants(&root.to_string(), &page).await.unwrap();
    assert_eq!(
        children.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        vec![child.to_string()]
    );
}

async fn users_page_by_name_and_filter_by_role(dir: &Directory) {
    let tenant = Uuid::new_v4();
    let other = Uuid::new_v4();
    dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
    dir.ensure_tenant(other, None, "Other").await.unwrap();
    let names = ["Eve", "Bob", "Dan", "Ann", "Cat"];
    for (i, name) in names.iter().enumerate() {
        let roles: &[Role] = if i % 2 == 0 {
            &[Role::Agent]
        } else {
            &[Role::Supervisor, Role::Analyst]
        };
        dir.ensure_user(
            Uuid::new_v4(),
            tenant,
            name,
            &format!("{name}-{tenant}@x.test"),
            roles,
        )
        .await
        .unwrap();
    }
    dir.ensure_user(
        Uuid::new_v4(),
        other,
        "Abe",
        &format!("abe-{other}@x.test"),
        &[Role::Agent],
    )
    .await
    .unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = page_request(2, &token).unwrap();
        let (users, next) = dir
            .users(&tenant.to_string(), None, None, &page)
            .await
            .unwrap();
        assert!(users.len() <= 2);
        seen.extend(users.into_iter().map(|u| u.display_name));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen, vec!["Ann", "Bob", "Cat", "Dan", "Eve"]);

    let page = page_request(0, "").unwrap();
    let (agents, _) = dir
        .users(&tenant.to_string(), Some(Role::Agent), None, &page)
        .await
        .unwrap();
    assert_eq!(
        agents
            .iter()
            .map(|u| u.display_name.as_str())
            .collect::<Vec<_>>(),
        vec!["Cat", "Dan", "Eve"]
    );
    let (analysts, _) = dir
        .users(&tenant.to_string(), Some(Role::Analyst), None, &page)
        .await
        .unwrap();
    assert_eq!(
        analysts
            .iter()
            .map(|u| u.display_name.as_str())
            .collect::<Vec<_>>(),
        vec!["Ann", "Bob"]
    );
    let (admins, _) = dir
        .users(&tenant.to_string(), Some(Role::Administrator), None, &page)
        .await
        .unwrap();
    assert!(admins.is_empty());
}

fn mutation(tenant: Uuid, request_id: Uuid) -> Mutation {
    Mutation {
        tenant_id: tenant.to_string(),
        actor_id: "admin-1".to_owned(),
        method: "/switchboard.directory.v1.DirectoryService/CreateUser",
        request_id,
        fingerprint: Fingerprint::of(&CreateUserRequest {
            request_id: request_id.to_string(),
            ..Default::default()
        }),
    }
}

fn response(id: &str) -> CreateUserResponse {
    CreateUserResponse {
        user: Some(User {
            id: id.to_owned(),
            display_name: "Ada".to_owned(),
            ..Default::default()
        }),
    }
}

async fn a_finished_mutation_replays_and_is_audited(dir: &Directory) {
    let tenant = Uuid::new_v4();
    dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
    let request_id = Uuid::new_v4();

    let mut tx = dir.begin(mutation(tenant, request_id)).await.unwrap();
    assert_eq!(tx.replay::<CreateUserResponse>().await.unwrap(), None);
    tx.finish("user-1", &response("user-1")).await.unwrap();

    let mut again = dir.begin(mutation(tenant, request_id)).await.unwrap();
    assert_eq!(
        again.replay::<CreateUserResponse>().await.unwrap(),
        Some(response("user-1"))
    );
    again.abandon().await.unwrap();

    // Request ids are scoped by tenant.
    let other = Uuid::new_v4();
    dir.ensure_tenant(other, None, "Other").await.unwrap();
    let mut elsewhere = dir.begin(mutation(other, request_id)).await.unwrap();
    assert_eq!(
        elsewhere.replay::<CreateUserResponse>().await.unwrap(),
        None
    );
    elsewhere.abandon().await.unwrap();
    // And by caller: another administrator's request is its own.
    let by_another = Mutation {
        actor_id: "admin-2".to_owned(),
        ..mutation(tenant, request_id)
    };
    let mut theirs = dir.begin(by_another).await.unwrap();
    assert_eq!(theirs.replay::<CreateUserResponse>().await.unwrap(), None);
    theirs.abandon().await.unwrap();
    // The same request id with another request is refused on request_id.
    let changed = Mutation {
        fingerprint: Fingerprint::of(&CreateUserRequest {
            request_id: request_id.to_string(),
            user: Some(User::default()),
        }),
        ..mutation(tenant, request_id)
    };
    let mut reused = dir.begin(changed).await.unwrap();
    let err = reused.replay::<CreateUserResponse>().await.unwrap_err();
    assert!(
        matches!(&err, GatewayError::InvalidField(f) if f.field == "request_id"),
        "{err:?}"
    );
    reused.abandon().await.unwrap();

    let page = page_request(0, "").unwrap();
    let (entries, _) = dir.audit_entries(&tenant.to_string(), &page).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].target_id, "user-1");
    assert_eq!(entries[0].actor_id, "admin-1");
    assert_eq!(entries[0].request_id, request_id.to_string());
    assert!(entries[0].method.ends_with("/CreateUser"));
}

async fn an_abandoned_mutation_leaves_nothing(dir: &Directory) {
    let tenant = Uuid::new_v4();
    dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
    let mut tx = dir.begin(mutation(tenant, Uuid::new_v4())).await.unwrap();
    let user = gateway::store::UserRecord {
        id: Uuid::new_v4().to_string(),
        tenant_id: tenant.to_string(),
        display_name: "Ghost".to_owned(),
        email: format!("ghost-{tenant}@x.test"),
        roles: vec![Role::Agent],
        active: true,
        created_at: 1,
    };
    tx.insert_user(&user).await.unwrap();
    drop(tx);
    assert!(dir.user(&user.id).await.unwrap().is_none());
    let page = page_request(0, "").unwrap();
    assert!(
        dir.audit_entries(&tenant.to_string(), &page)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

async fn concurrent_retries_of_one_request_apply_once(dir: &Directory) {
    let tenant = Uuid::new_v4();
    dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
    let request_id = Uuid::new_v4();
    let attempt = |n: usize| {
        let dir = dir.clone();
        async move {
            let mut tx = dir.begin(mutation(tenant, request_id)).await.unwrap();
            if let Some(done) = tx.replay::<CreateUserResponse>().await.unwrap() {
                tx.abandon().await.unwrap();
                return done;
            }
            // Hold the transaction a moment so that the attempts overlap.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let answer = response(&format!("user-{n}"));
            tx.finish(&format!("user-{n}"), &answer).await.unwrap();
            answer
        }
    };
    let answers = futures::future::join_all((0..4).map(attempt)).await;
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let page = page_request(0, "").unwrap();
    assert_eq!(
        dir.audit_entries(&tenant.to_string(), &page)
            .await
            .unwrap()
            .0
            .len(),
        1
    );
}

/// Two write transactions that serialize on the same key take turns: the second waits
/// until the first ends (how a tenant's first administrator is created only once).
async fn transactions_serialized_on_a_key_take_turns(dir: &Directory) {
    let tenant = Uuid::new_v4();
    dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
    let key = format!("first administrator\n{tenant}");
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut first = dir.begin(mutation(tenant, Uuid::new_v4())).await.unwrap();
    first.serialize_on(&key).await.unwrap();
    let second = {
        let dir = dir.clone();
        let key = key.clone();
        let order = order.clone();
        tokio::spawn(async move {
            let mut tx = dir.begin(mutation(tenant, Uuid::new_v4())).await.unwrap();
            tx.serialize_on(&key).await.unwrap();
            order.lock().unwrap().push("second");
            tx.abandon().await.unwrap();
        })
    };
    // Positive evidence that the second one waits: on PostgreSQL a backend of this database
    // waiting on a lock; on SQLite the one writer connection held by the first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            !second.is_finished(),
            "the second did not wait for the first"
        );
        let waiting = match dir.db().dialect {
            switchboard_server_kit::db::Dialect::Postgres => {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(&dir.db().pool)
                .await
                .unwrap();
                n > 0
            }
            switchboard_server_kit::db::Dialect::Sqlite => {
                let writer = dir.db().writer();
                writer.size() == 1 && writer.num_idle() == 0
            }
        };
        if waiting {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    order.lock().unwrap().push("first");
    first.abandon().await.unwrap();
    second.await.unwrap();
    assert_eq!(*order.lock().unwrap(), ["first", "second"]);
}

async fn api_keys_list_newest_first_and_revoke_once(dir: &Directory) {
    let tenant = Uuid::new_v4();
    dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = Uuid::new_v4();
        dir.ensure_api_key(id, tenant, &format!("Key {n}"), &[Role::Bot], &secret(id))
            .await
            .unwrap();
        ids.push(id.to_string());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = page_request(2, &token).unwrap();
        let (keys, next) = dir.api_keys(&tenant.to_string(), &page).await.unwrap();
        seen.extend(keys.into_iter().map(|k| k.id));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    ids.reverse();
    assert_eq!(seen, ids);

    let mut tx = dir.begin(mutation(tenant, Uuid::new_v4())).await.unwrap();
    tx.revoke_api_key(&ids[0], 100).await.unwrap();
    tx.revoke_api_key(&ids[0], 200).await.unwrap();
    tx.finish(&ids[0], &response("x")).await.unwrap();
    assert_eq!(
        dir.api_key(&ids[0]).await.unwrap().unwrap().revoked_at,
        Some(100)
    );
    assert_eq!(
        dir.api_key(&ids[1]).await.unwrap().unwrap().revoked_at,
        None
    );
}

async fn opening_twice_keeps_the_data(dir: &Directory) {
    let tenant = Uuid::new_v4();
    dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
    let reopened = Directory::open(dir.db()).await.unwrap();
    assert!(
        reopened
            .tenant(&tenant.to_string())
            .await
            .unwrap()
            .is_some()
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = crate::common::sqlite().await;
                    super::$name(&db.directory).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = crate::common::postgres().await else { return };
                    super::$name(&db.directory).await;
                }
            )*
        }
    };
}

/// Card numbers typed as tenant, user or API key names are stored masked (product rule
/// 14), so the directory never holds one and never signs one into an identity.
async fn card_numbers_in_names_are_stored_masked(dir: &Directory) {
    let (tenant, user, key) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    dir.ensure_tenant(tenant, None, "Acme 4111.1111.1111.1111")
        .await
        .unwrap();
    dir.ensure_user(
        user,
        tenant,
        "Ada ４１１１ １１１１ １１１１ １１１１",
        "ada@example.com",
        &[Role::Agent],
    )
    .await
    .unwrap();
    dir.ensure_api_key(
        key,
        tenant,
        "Bot 5555/5555/5555/4444",
        &[Role::Bot],
        &secret(key),
    )
    .await
    .unwrap();
    let tenant = dir.tenant(&tenant.to_string()).await.unwrap().unwrap();
    assert_eq!(tenant.display_name, "Acme 4111.11**.****.1111");
    let user = dir.user(&user.to_string()).await.unwrap().unwrap();
    assert_eq!(user.display_name, "Ada ４１１１ １１** **** １１１１");
    let key = dir.api_key(&key.to_string()).await.unwrap().unwrap();
    assert_eq!(key.display_name, "Bot 5555/55**/****/4444");
}

/// The internal directory API's look-up: only the asked tenant's users among the ids.
async fn users_by_id_stay_within_the_tenant(dir: &Directory) {
    let (tenant, other) = (Uuid::new_v4(), Uuid::new_v4());
    dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
    dir.ensure_tenant(other, None, "Other").await.unwrap();
    let (ada, bob, eve) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (id, name, tenant) in [
        (ada, "Ada", tenant),
        (bob, "Bob", tenant),
        (eve, "Eve", other),
    ] {
        dir.ensure_user(id, tenant, name, &format!("{id}@x.test"), &[Role::Agent])
            .await
            .unwrap();
    }
    let ids = [ada, eve, Uuid::new_v4()].map(|id| id.to_string());
    let found = dir
        .users_in_tenant(&tenant.to_string(), &ids)
        .await
        .unwrap();
    let names: Vec<&str> = found.iter().map(|u| u.display_name.as_str()).collect();
    assert_eq!(
        names,
        ["Ada"],
        "Bob was not asked for, Eve is another tenant's"
    );
    assert_eq!(found[0].roles, [Role::Agent]);
    assert!(found[0].active);
    assert!(
        dir.users_in_tenant(&tenant.to_string(), &[])
            .await
            .unwrap()
            .is_empty()
    );
}

fn team(tenant: Uuid, name: &str) -> TeamRecord {
    TeamRecord {
        id: Uuid::new_v4().to_string(),
        tenant_id: tenant.to_string(),
        display_name: name.to_owned(),
        created_at: 1,
    }
}

/// Teams: names unique in a tenant without regard to case, listed by name a page at a time;
/// memberships read beside users, filtered on and listed by team; deleting a team ends its
/// memberships. Another tenant's team is nobody's business.
async fn teams_names_memberships_and_deletion(dir: &Directory) {
    let (tenant, other) = (Uuid::new_v4(), Uuid::new_v4());
    dir.ensure_tenant(tenant, None, "Acme").await.unwrap();
    dir.ensure_tenant(other, None, "Other").await.unwrap();
    let (ada, bob) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, name) in [(ada, "Ada"), (bob, "Bob")] {
        dir.ensure_user(id, tenant, name, &format!("{id}@x.test"), &[Role::Agent])
            .await
            .unwrap();
    }
    let (sales, billing, foreign) = (
        team(tenant, "Sales"),
        team(tenant, "Billing"),
        team(other, "Sales"),
    );
    let mut tx = dir.begin(mutation(tenant, Uuid::new_v4())).await.unwrap();
    for t in [&sales, &billing, &foreign] {
        tx.insert_team(t).await.unwrap();
    }
    tx.finish("teams", &response("teams")).await.unwrap();

    // The same name in any case is taken in the tenant, and the failed write leaves nothing.
    let mut tx = dir.begin(mutation(tenant, Uuid::new_v4())).await.unwrap();
    let err = tx.insert_team(&team(tenant, "BILLING")).await.unwrap_err();
    assert!(
        matches!(&err, GatewayError::AlreadyExists(m) if m.contains("BILLING")),
        "{err:?}"
    );
    drop(tx);
    let mut tx = dir.begin(mutation(tenant, Uuid::new_v4())).await.unwrap();
    let mut renamed = sales.clone();
    renamed.display_name = "billing".to_owned();
    assert!(matches!(
        tx.rename_team(&renamed).await,
        Err(GatewayError::AlreadyExists(_))
    ));
    drop(tx);

    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = page_request(1, &token).unwrap();
        let (teams, next) = dir.teams(&tenant.to_string(), &page).await.unwrap();
        names.extend(teams.into_iter().map(|t| t.display_name));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(names, ["Billing", "Sales"]);
    assert_eq!(
        dir.team(&tenant.to_string(), &foreign.id).await.unwrap(),
        None,
        "another tenant's team"
    );

    // Memberships: only the tenant's teams are found among the ids asked for.
    let mut tx = dir.begin(mutation(tenant, Uuid::new_v4())).await.unwrap();
    let asked = [
        sales.id.clone(),
        foreign.id.clone(),
        Uuid::new_v4().to_string(),
    ];
    assert_eq!(
        tx.teams_among(&tenant.to_string(), &asked).await.unwrap(),
        vec![sales.id.clone()]
    );
    let both = {
        let mut both = vec![sales.id.clone(), billing.id.clone()];
        both.sort();
        both
    };
    tx.set_user_teams(&ada.to_string(), &both).await.unwrap();
    tx.set_user_teams(&bob.to_string(), &[billing.id.clone(), sales.id.clone()])
        .await
        .unwrap();
    tx.set_user_teams(&bob.to_string(), std::slice::from_ref(&sales.id))
        .await
        .unwrap();
    assert_eq!(
        tx.user_team_ids(&bob.to_string()).await.unwrap(),
        vec![sales.id.clone()]
    );
    tx.finish("members", &response("members")).await.unwrap();

    let users = dir
        .users_in_tenant(&tenant.to_string(), &[ada.to_string(), bob.to_string()])
        .await
        .unwrap();
    let mut with_teams: Vec<(String, Vec<String>)> = dir
        .with_team_ids(users)
        .await
        .unwrap()
        .into_iter()
        .map(|(u, teams)| (u.display_name, teams))
        .collect();
    with_teams.sort();
    assert_eq!(
        with_teams,
        [
            ("Ada".to_owned(), both.clone()),
            ("Bob".to_owned(), vec![sales.id.clone()])
        ]
    );
    let page = page_request(0, "").unwrap();
    let members_of = |team_id: String| async move {
        let (users, _) = dir
            .users(
                &tenant.to_string(),
                None,
                Some(&team_id),
                &page_request(0, "").unwrap(),
            )
            .await
            .unwrap();
        users
            .into_iter()
            .map(|u| u.display_name)
            .collect::<Vec<_>>()
    };
    assert_eq!(members_of(sales.id.clone()).await, ["Ada", "Bob"]);
    assert_eq!(members_of(billing.id.clone()).await, ["Ada"]);
    let mut expected = vec![ada.to_string(), bob.to_string()];
    expected.sort();
    let (first, token) = dir
        .team_members(
            &tenant.to_string(),
            &sales.id,
            &page_request(1, "").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let (second, last) = dir
        .team_members(
            &tenant.to_string(),
            &sales.id,
            &page_request(1, &token).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!([first, second].concat(), expected);
    assert!(last.is_empty());
    assert_eq!(
        dir.team_members(&other.to_string(), &sales.id, &page)
            .await
            .unwrap(),
        None,
        "the team asked for in another tenant"
    );

    // Deleting a team ends its memberships; the other team keeps its own.
    let mut tx = dir.begin(mutation(tenant, Uuid::new_v4())).await.unwrap();
    tx.delete_team(&sales.id).await.unwrap();
    tx.finish(&sales.id, &response("deleted")).await.unwrap();
    assert_eq!(
        dir.team(&tenant.to_string(), &sales.id).await.unwrap(),
        None
    );
    assert!(members_of(sales.id.clone()).await.is_empty());
    assert_eq!(members_of(billing.id.clone()).await, ["Ada"]);
    let users = dir
        .users_in_tenant(&tenant.to_string(), &[bob.to_string()])
        .await
        .unwrap();
    assert_eq!(
        dir.with_team_ids(users).await.unwrap()[0].1,
        Vec::<String>::new()
    );
    let (teams, _) = dir.teams(&other.to_string(), &page).await.unwrap();
    assert_eq!(
        teams,
        [foreign],
        "the other tenant's team of the same name stays"
    );
}

conformance!(
    teams_names_memberships_and_deletion,
    users_by_id_stay_within_the_tenant,
    card_numbers_in_names_are_stored_masked,
    seeding_twice_changes_nothing,
    seeding_refuses_a_taken_email_and_a_foreign_secret,
    ancestry_is_parent_first,
    users_page_by_name_and_filter_by_role,
    a_finished_mutation_replays_and_is_audited,
    an_abandoned_mutation_leaves_nothing,
    concurrent_retries_of_one_request_apply_once,
    transactions_serialized_on_a_key_take_turns,
    api_keys_list_newest_first_and_revoke_once,
    opening_twice_keeps_the_data,
);
