//! The team RPCs of `switchboard.directory.v1.DirectoryService`: teams of the caller's
//! tenant, created, listed, renamed and deleted. Memberships are set on users
//! (`User.team_ids`, in `directory.rs`).
//!
//! Like every directory mutation, each one is idempotent by request_id and writes an audit
//! row in its transaction.

use switchboard_proto::directory::v1 as pb;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::idempotency::Fingerprint;
use switchboard_server_kit::{parse_uuid, require_request_id};
use tonic::{Request, Response, Status};
use tracing::info;
use uuid::Uuid;

use super::convert;
use super::directory::{caller, mutation, not_found, required};
use crate::domain::directory as rules;
use crate::domain::page::page_request;
use crate::error::GatewayError;
use crate::store::{Directory, TeamRecord};

const CREATE_TEAM: &str = "/switchboard.directory.v1.DirectoryService/CreateTeam";
const LIST_TEAMS: &str = "/switchboard.directory.v1.DirectoryService/ListTeams";
const UPDATE_TEAM: &str = "/switchboard.directory.v1.DirectoryService/UpdateTeam";
const DELETE_TEAM: &str = "/switchboard.directory.v1.DirectoryService/DeleteTeam";

pub(super) async fn create(
    directory: &Directory,
    request: Request<pb::CreateTeamRequest>,
) -> Result<Response<pb::CreateTeamResponse>, Status> {
    let caller = caller(&request, CREATE_TEAM)?;
    let req = request.into_inner();
    let request_id = require_request_id(&req.request_id)?;
    let fingerprint = Fingerprint::of(&req);
    let team = required("team", req.team)?;
    let display_name = rules::display_name("team.display_name", &team.display_name)?;

    let mut tx = directory
        .begin(mutation(&caller, CREATE_TEAM, request_id, fingerprint))
        .await?;
    if let Some(done) = tx.replay().await? {
        tx.abandon().await?;
        return Ok(Response::new(done));
    }
    let record = TeamRecord {
        id: Uuid::new_v4().to_string(),
        tenant_id: caller.tenant_id.clone(),
        display_name,
        created_at: now_micros(),
    };
    tx.insert_team(&record).await?;
    let id = record.id.clone();
    let response = pb::CreateTeamResponse {
        team: Some(convert::team(record)),
    };
    tx.finish(&id, &response).await?;
    info!(team_id = %id, tenant_id = %caller.tenant_id, actor_id = %caller.principal_id, "team created");
    Ok(Response::new(response))
}

pub(super) async fn list(
    directory: &Directory,
    request: Request<pb::ListTeamsRequest>,
) -> Result<Response<pb::ListTeamsResponse>, Status> {
    let caller = caller(&request, LIST_TEAMS)?;
    let req = request.into_inner();
    let page = page_request(req.page_size, &req.page_token).map_err(GatewayError::from)?;
    let (teams, next_page_token) = directory.teams(&caller.tenant_id, &page).await?;
    Ok(Response::new(pb::ListTeamsResponse {
        teams: teams.into_iter().map(convert::team).collect(),
        next_page_token,
    }))
}

pub(super) async fn update(
    directory: &Directory,
    request: Request<pb::UpdateTeamRequest>,
) -> Result<Response<pb::UpdateTeamResponse>, Status> {
    let caller = caller(&request, UPDATE_TEAM)?;
    let req = request.into_inner();
    let request_id = require_request_id(&req.request_id)?;
    let fingerprint = Fingerprint::of(&req);
    let new = required("team", req.team)?;
    let id = parse_uuid("team.id", &new.id)?.to_string();
    // The name is all a team has to change, so a valid mask always names it.
    rules::update_mask(req.update_mask.as_ref(), &["display_name"])?;
    let display_name = rules::display_name("team.display_name", &new.display_name)?;

    let mut tx = directory
        .begin(mutation(&caller, UPDATE_TEAM, request_id, fingerprint))
        .await?;
    if let Some(done) = tx.replay().await? {
        tx.abandon().await?;
        return Ok(Response::new(done));
    }
    let mut team = tx
        .team(&caller.tenant_id, &id)
        .await?
        .ok_or_else(|| not_found("team", &id))?;
    team.display_name = display_name;
    tx.rename_team(&team).await?;
    let response = pb::UpdateTeamResponse {
        team: Some(convert::team(team)),
    };
    tx.finish(&id, &response).await?;
    info!(team_id = %id, actor_id = %caller.principal_id, "team renamed");
    Ok(Response::new(response))
}

pub(super) async fn delete(
    directory: &Directory,
    request: Request<pb::DeleteTeamRequest>,
) -> Result<Response<pb::DeleteTeamResponse>, Status> {
    let caller = caller(&request, DELETE_TEAM)?;
    let req = request.into_inner();
    let request_id = require_request_id(&req.request_id)?;
    let fingerprint = Fingerprint::of(&req);
    let id = parse_uuid("team_id", &req.team_id)?.to_string();

    let mut tx = directory
        .begin(mutation(&caller, DELETE_TEAM, request_id, fingerprint))
        .await?;
    if let Some(done) = tx.replay().await? {
        tx.abandon().await?;
        return Ok(Response::new(done));
    }
    // No membership of the team may be written between this check and the commit.
    tx.hold_teams(&caller.tenant_id).await?;
    tx.team(&caller.tenant_id, &id)
        .await?
        .ok_or_else(|| not_found("team", &id))?;
    tx.delete_team(&id).await?;
    let response = pb::DeleteTeamResponse {};
    tx.finish(&id, &response).await?;
    info!(team_id = %id, actor_id = %caller.principal_id, "team deleted");
    Ok(Response::new(response))
}
