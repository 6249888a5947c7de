//! Teams through the gateway, as the demo tenant's people use them: the administrator creates,
//! renames and deletes teams and puts users in them (retrying freely with the same
//! request_id); the supervisor lists a team's members; an agent sees the teams and its own
//! membership; the other services learn members from the directory's internal API. Bad
//! input (another tenant's team, a missing name, an unknown id, a non-administrator, a
//! 100,000-element list) gets a clear error at once and changes nothing.

use std::time::{Duration, Instant};

use switchboard::seed::Bearer;
use switchboard_proto::directory::internal::v1 as dir_internal;
use switchboard_proto::directory::v1 as dir;
use switchboard_proto::directory::v1::directory_service_client::DirectoryServiceClient;
use switchboard_tests::flows::{create_team, set_teams};
use switchboard_tests::{Backend, Harness, rid};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

switchboard_tests::on_each_backend!(an_administrator_organises_teams_that_everyone_sees);
async fn an_administrator_organises_teams_that_everyone_sees(backend: &Backend) {
    let harness = Harness::start(backend).await.expect("suite starts");
    organise_teams(&harness).await;
    harness.stop().await.expect("clean stop");
}

switchboard_tests::on_each_backend!(bad_team_input_gets_a_clear_error_and_changes_nothing);
async fn bad_team_input_gets_a_clear_error_and_changes_nothing(backend: &Backend) {
    let harness = Harness::start(backend).await.expect("suite starts");
    refuse_bad_team_input(&harness).await;
    harness.stop().await.expect("clean stop");
}

fn new_team(request_id: &str, name: &str) -> dir::CreateTeamRequest {
    dir::CreateTeamRequest {
        request_id: request_id.to_owned(),
        team: Some(dir::Team {
            display_name: name.into(),
            ..Default::default()
        }),
    }
}

fn user_teams(request_id: &str, user_id: &str, team_ids: Vec<String>) -> dir::UpdateUserRequest {
    dir::UpdateUserRequest {
        request_id: request_id.to_owned(),
        user: Some(dir::User {
            id: user_id.to_owned(),
            team_ids,
            ..Default::default()
        }),
        // As grpcurl users write it.
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["teamIds".into()],
        }),
    }
}

/// A new agent `name` of the caller's tenant, in the teams of `team_ids`.
fn new_agent(name: &str, team_ids: Vec<String>) -> dir::CreateUserRequest {
    dir::CreateUserRequest {
        request_id: rid(),
        user: Some(dir::User {
            display_name: name.into(),
            email: format!("{}@demo.test", name.to_lowercase().replace(' ', ".")),
            roles: vec![dir::Role::Agent as i32],
            team_ids,
            ..Default::default()
        }),
    }
}

/// The teams of user `user_id` as GetUser shows them to the caller of `directory`.
async fn teams_of(directory: &mut Directory, user_id: &str) -> Vec<String> {
    directory
        .get_user(dir::GetUserRequest {
            user_id: user_id.to_owned(),
        })
        .await
        .expect("the user is read")
        .into_inner()
        .user
        .expect("user")
        .team_ids
}

fn members_of(team_id: &str) -> dir::ListUsersRequest {
    dir::ListUsersRequest {
        team_id: team_id.to_owned(),
        ..Default::default()
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn ids(users: &[dir::User]) -> Vec<String> {
    sorted(users.iter().map(|u| u.id.clone()).collect())
}

type Directory = DirectoryServiceClient<InterceptedService<Channel, Bearer>>;

async fn team_names(directory: &mut Directory) -> Vec<String> {
    directory
        .list_teams(dir::ListTeamsRequest::default())
        .await
        .expect("teams are listed")
        .into_inner()
        .teams
        .into_iter()
        .map(|t| t.display_name)
        .collect()
}

async fn organise_teams(h: &Harness) {
    let mut admin = h.directory("admin");
    let mut supervisor = h.directory("supervisor");
    let mut agent1 = h.directory("agent1");
    let agent1_id = h.creds.user("agent1").id.clone();
    let agent2_id = h.creds.user("agent2").id.clone();

    // The administrator creates two teams; a retry of the first after a timeout creates
    // nothing more.
    let request_id = rid();
    let tier1 = admin
        .create_team(new_team(&request_id, "Tier 1"))
        .await
        .expect("team created")
        .into_inner()
        .team
        .expect("team");
    let retried = admin
        .create_team(new_team(&request_id, "Tier 1"))
        .await
        .expect("the retry answers as the first call")
        .into_inner()
        .team
        .expect("team");
    assert_eq!(retried, tier1);
    assert_eq!(tier1.tenant_id, h.creds.tenant_id);
    let tier2 = create_team(h, h.bearer("admin"), "Tier 2").await;
    assert_eq!(team_names(&mut agent1).await, ["Tier 1", "Tier 2"]);

    // Agents join teams: agent1 Tier 1, agent2 both, and a new agent Tier 2.
    let request_id = rid();
    let agent1_user = admin
        .update_user(user_teams(&request_id, &agent1_id, vec![tier1.id.clone()]))
        .await
        .expect("agent1 joins Tier 1")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(agent1_user.team_ids, vec![tier1.id.clone()]);
    let retried = admin
        .update_user(user_teams(&request_id, &agent1_id, vec![tier1.id.clone()]))
        .await
        .expect("the retry answers as the first call")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(retried, agent1_user);
    let both = sorted(vec![tier1.id.clone(), tier2.id.clone()]);
    let agent2_user = set_teams(h, h.bearer("admin"), &agent2_id, &[&tier2.id, &tier1.id]).await;
    assert_eq!(agent2_user.team_ids, both);
    let casey = admin
        .create_user(new_agent("Casey Night", vec![tier2.id.clone()]))
        .await
        .expect("a new agent in Tier 2")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(casey.team_ids, vec![tier2.id.clone()]);

    // The supervisor lists each team's members; an agent sees its own teams.
    let tier1_members = supervisor
        .list_users(members_of(&tier1.id))
        .await
        .expect("Tier 1's members")
        .into_inner()
        .users;
    assert_eq!(
        ids(&tier1_members),
        sorted(vec![agent1_id.clone(), agent2_id.clone()])
    );
    let tier2_members = supervisor
        .list_users(members_of(&tier2.id))
        .await
        .expect("Tier 2's members")
        .into_inner()
        .users;
    assert_eq!(
        ids(&tier2_members),
        sorted(vec![agent2_id.clone(), casey.id.clone()])
    );
    assert_eq!(
        teams_of(&mut agent1, &agent1_id).await,
        vec![tier1.id.clone()]
    );

    // Another service (routing-svc filtering live agent states, reporting-svc filtering
    // reports) learns the members from the directory's internal API.
    let mut internal = h
        .directory_internal("routing-svc")
        .expect("internal directory client");
    let members = internal
        .list_team_members(dir_internal::ListTeamMembersRequest {
            tenant_id: h.creds.tenant_id.clone(),
            team_id: tier1.id.clone(),
            ..Default::default()
        })
        .await
        .expect("a service lists Tier 1's members")
        .into_inner();
    assert_eq!(
        members.user_ids,
        sorted(vec![agent1_id.clone(), agent2_id.clone()])
    );
    assert!(members.next_page_token.is_empty());
    let users = internal
        .get_users(dir_internal::GetUsersRequest {
            tenant_id: h.creds.tenant_id.clone(),
            user_ids: vec![agent2_id.clone()],
        })
        .await
        .expect("a service reads agent2")
        .into_inner()
        .users;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].team_ids, both);

    // Renamed (a retry changes nothing more), then Tier 1 deleted: its members lose it.
    let rename = dir::UpdateTeamRequest {
        request_id: rid(),
        team: Some(dir::Team {
            id: tier2.id.clone(),
            display_name: "Tier 2 (nights)".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["displayName".into()],
        }),
    };
    for _ in 0..2 {
        let renamed = admin
            .update_team(rename.clone())
            .await
            .expect("Tier 2 renamed")
            .into_inner()
            .team
            .expect("team");
        assert_eq!(
            (renamed.id.as_str(), renamed.display_name.as_str()),
            (tier2.id.as_str(), "Tier 2 (nights)")
        );
    }
    let delete = dir::DeleteTeamRequest {
        request_id: rid(),
        team_id: tier1.id.clone(),
    };
    for _ in 0..2 {
        admin
            .delete_team(delete.clone())
            .await
            .expect("Tier 1 deleted; the retry answers the same");
    }
    assert_eq!(team_names(&mut agent1).await, ["Tier 2 (nights)"]);
    assert!(teams_of(&mut agent1, &agent1_id).await.is_empty());
    let agent2_now = supervisor
        .list_users(members_of(&tier2.id))
        .await
        .expect("Tier 2's members")
        .into_inner()
        .users
        .into_iter()
        .find(|u| u.id == agent2_id)
        .expect("agent2 is still in Tier 2");
    assert_eq!(agent2_now.team_ids, vec![tier2.id.clone()]);
    let err = supervisor
        .list_users(members_of(&tier1.id))
        .await
        .expect_err("a deleted team");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = internal
        .list_team_members(dir_internal::ListTeamMembersRequest {
            tenant_id: h.creds.tenant_id.clone(),
            team_id: tier1.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a deleted team's members");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // Every change once in the audit log, whatever the retries.
    let audit = admin
        .list_audit_log_entries(dir::ListAuditLogEntriesRequest::default())
        .await
        .expect("audit log")
        .into_inner()
        .entries;
    let count = |method: &str, target: &str| {
        audit
            .iter()
            .filter(|e| e.method.ends_with(method) && e.target_id == target)
            .count()
    };
    assert_eq!(count("/CreateTeam", &tier1.id), 1);
    assert_eq!(count("/UpdateUser", &agent1_id), 1);
    assert_eq!(count("/UpdateTeam", &tier2.id), 1);
    assert_eq!(count("/DeleteTeam", &tier1.id), 1);
}

/// Asserts `err` is INVALID_ARGUMENT naming `field` and saying `says`.
fn assert_invalid(err: &Status, field: &str, says: &str) {
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let message = err.message();
    assert!(
        message.starts_with(&format!("{field}: ")) && message.contains(says),
        "{message:?} should name {field} and say {says:?}"
    );
}

async fn refuse_bad_team_input(h: &Harness) {
    let mut admin = h.directory("admin");
    let mut supervisor = h.directory("supervisor");
    let agent1_id = h.creds.user("agent1").id.clone();
    let support = create_team(h, h.bearer("admin"), "Support").await;
    set_teams(h, h.bearer("admin"), &agent1_id, &[&support.id]).await;

    // Another tenant's team, even of the same name, is no team of the demo tenant.
    let (_, globex_admin) = h
        .new_tenant_with_administrator("Globex", "Gina Admin", "gina@globex.test")
        .await;
    let foreign = create_team(h, globex_admin, "Support").await;
    let err = admin
        .update_user(user_teams(&rid(), &agent1_id, vec![foreign.id.clone()]))
        .await
        .expect_err("another tenant's team");
    assert_invalid(&err, "user.team_ids", &foreign.id);
    let err = supervisor
        .list_users(members_of(&foreign.id))
        .await
        .expect_err("another tenant's team's members");
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::NotFound,
            format!("team {} not found", foreign.id).as_str()
        )
    );
    let err = admin
        .delete_team(dir::DeleteTeamRequest {
            request_id: rid(),
            team_id: foreign.id.clone(),
        })
        .await
        .expect_err("another tenant's team deleted");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = h
        .directory_internal("reporting-svc")
        .expect("internal directory client")
        .list_team_members(dir_internal::ListTeamMembersRequest {
            tenant_id: h.creds.tenant_id.clone(),
            team_id: foreign.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("another tenant's team asked for in the demo tenant");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(team_names(&mut admin).await, ["Support"]);

    // A missing name, an unknown id.
    let err = admin
        .create_team(new_team(&rid(), "   "))
        .await
        .expect_err("a team without a name");
    assert_invalid(&err, "team.display_name", "is required");
    let err = admin
        .create_team(dir::CreateTeamRequest {
            request_id: rid(),
            team: None,
        })
        .await
        .expect_err("no team at all");
    assert_invalid(&err, "team", "is required");
    let err = admin
        .create_team(new_team(&rid(), "SUPPORT"))
        .await
        .expect_err("a taken name");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = admin
        .update_team(dir::UpdateTeamRequest {
            request_id: rid(),
            team: Some(dir::Team {
                id: unknown.clone(),
                display_name: "Ghosts".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .expect_err("an unknown team renamed");
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, format!("team {unknown} not found").as_str())
    );
    let err = admin
        .create_user(new_agent("Uma", vec![support.id.clone(), unknown.clone()]))
        .await
        .expect_err("a user in an unknown team");
    assert_invalid(&err, "user.team_ids", &unknown);

    // Only administrators change teams.
    for handle in ["supervisor", "agent1"] {
        let err = h
            .directory(handle)
            .create_team(new_team(&rid(), "Shadow team"))
            .await
            .expect_err("a non-administrator creates a team");
        assert_eq!(err.code(), Code::PermissionDenied, "{handle}: {err:?}");
        let err = h
            .directory(handle)
            .delete_team(dir::DeleteTeamRequest {
                request_id: rid(),
                team_id: support.id.clone(),
            })
            .await
            .expect_err("a non-administrator deletes a team");
        assert_eq!(err.code(), Code::PermissionDenied, "{handle}: {err:?}");
    }

    // 100,000 team ids: refused at once, naming the bound.
    let huge: Vec<String> = vec![support.id.clone(); 100_000];
    let started = Instant::now();
    let err = admin
        .update_user(user_teams(&rid(), &agent1_id, huge.clone()))
        .await
        .expect_err("100,000 teams");
    assert_invalid(&err, "user.team_ids", "at most 20 teams");
    let err = admin
        .create_user(new_agent("Vic", huge))
        .await
        .expect_err("a new user in 100,000 teams");
    assert_invalid(&err, "user.team_ids", "at most 20 teams");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // A request_id reused for another request is refused; the first answer stands.
    let request_id = rid();
    admin
        .create_team(new_team(&request_id, "Escalations"))
        .await
        .expect("team created");
    let err = admin
        .create_team(new_team(&request_id, "Escalations EU"))
        .await
        .expect_err("the same request_id for another team");
    assert_invalid(&err, "request_id", "already used");

    // Nothing of the refused calls was applied.
    assert_eq!(team_names(&mut admin).await, ["Escalations", "Support"]);
    assert_eq!(
        teams_of(&mut h.directory("agent1"), &agent1_id).await,
        vec![support.id.clone()]
    );
    let users = admin
        .list_users(dir::ListUsersRequest::default())
        .await
        .expect("users")
        .into_inner()
        .users;
    assert!(
        users
            .iter()
            .all(|u| u.email != "uma@demo.test" && u.email != "vic@demo.test"),
        "a refused user was created"
    );
}
