//! Teams and their members: the SQL, and the [`Directory`] and [`Tx`] methods that run it.
//!
//! Memberships are not part of [`super::UserRecord`] (nor of the caches that authenticate a
//! call, which never need them): they are read beside users where an answer shows them.

use std::collections::HashMap;

use sqlx::AnyConnection;
use switchboard_server_kit::db::{is_unique_violation, now_micros};

use super::queries::placeholders;
use super::{Directory, Tx, UserRecord};
use crate::domain::page::{Cursor, PageRequest, finish};
use crate::domain::team::name_key;
use crate::error::GatewayError;

/// A team as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeamRecord {
    /// UUID.
    pub id: String,
    /// The team's tenant.
    pub tenant_id: String,
    /// Name shown to people, unique in the tenant without regard to case.
    pub display_name: String,
    /// Creation time, microseconds since the epoch.
    pub created_at: i64,
}

type TeamRow = (String, String, String, i64);

const TEAM_COLUMNS: &str = "id, tenant_id, display_name, created_at";

fn team_of((id, tenant_id, display_name, created_at): TeamRow) -> TeamRecord {
    TeamRecord {
        id,
        tenant_id,
        display_name,
        created_at,
    }
}

fn name_taken(err: sqlx::Error, display_name: &str) -> GatewayError {
    if is_unique_violation(&err) {
        GatewayError::AlreadyExists(format!(
            "the tenant already has a team named {display_name:?}"
        ))
    } else {
        err.into()
    }
}

async fn team(conn: &mut AnyConnection, id: &str) -> Result<Option<TeamRecord>, GatewayError> {
    let row: Option<TeamRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(team_of))
}

/// Team `id` when it is one of `tenant_id`'s.
async fn team_in(
    conn: &mut AnyConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<TeamRecord>, GatewayError> {
    Ok(team(conn, id).await?.filter(|t| t.tenant_id == tenant_id))
}

async fn teams(
    conn: &mut AnyConnection,
    tenant_id: &str,
    page: &PageRequest,
) -> Result<Vec<TeamRecord>, GatewayError> {
    let (after_name, after_id) = page
        .after
        .as_ref()
        .map(|c| (c.key.clone(), c.id.clone()))
        .unwrap_or_default();
    let rows: Vec<TeamRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TEAM_COLUMNS} FROM teams \
         WHERE tenant_id = $1 AND (display_name > $2 OR (display_name = $2 AND id > $3)) \
         ORDER BY display_name, id LIMIT $4"
    )))
    .bind(tenant_id)
    .bind(after_name)
    .bind(after_id)
    .bind(page.size as i64 + 1)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(team_of).collect())
}

/// The ids among `ids` that are teams of `tenant_id`. `ids` is bounded by the caller (one
/// placeholder each).
async fn teams_among(
    conn: &mut AnyConnection,
    tenant_id: &str,
    ids: &[String],
) -> Result<Vec<String>, GatewayError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id FROM teams WHERE tenant_id = $1 AND id IN ({})",
        placeholders(2, ids.len())
    );
    let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql)).bind(tenant_id);
    for id in ids {
        query = query.bind(id);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The team ids of each of `user_ids` that is a member of any, ascending. `user_ids` is
/// bounded by the caller (one placeholder each).
async fn team_ids_of(
    conn: &mut AnyConnection,
    user_ids: &[String],
) -> Result<HashMap<String, Vec<String>>, GatewayError> {
    let mut teams: HashMap<String, Vec<String>> = HashMap::new();
    if user_ids.is_empty() {
        return Ok(teams);
    }
    let sql = format!(
        "SELECT user_id, team_id FROM team_members WHERE user_id IN ({}) \
         ORDER BY user_id, team_id",
        placeholders(1, user_ids.len())
    );
    let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql));
    for id in user_ids {
        query = query.bind(id);
    }
    for (user_id, team_id) in query.fetch_all(&mut *conn).await? {
        teams.entry(user_id).or_default().push(team_id);
    }
    Ok(teams)
}

/// A page of the user ids of team `team_id`'s members, ascending.
async fn members(
    conn: &mut AnyConnection,
    team_id: &str,
    page: &PageRequest,
) -> Result<Vec<String>, GatewayError> {
    let after = page
        .after
        .as_ref()
        .map(|c| c.id.clone())
        .unwrap_or_default();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT user_id FROM team_members WHERE team_id = $1 AND user_id > $2 \
         ORDER BY user_id LIMIT $3",
    )
    .bind(team_id)
    .bind(after)
    .bind(page.size as i64 + 1)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

impl Directory {
    /// Team `id` when it is one of `tenant_id`'s; another tenant's team is `None` too.
    pub async fn team(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<TeamRecord>, GatewayError> {
        let mut conn = self.conn().await?;
        team_in(&mut conn, tenant_id, id).await
    }

    /// A page of the teams of `tenant_id`, by name.
    pub async fn teams(
        &self,
        tenant_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<TeamRecord>, String), GatewayError> {
        let mut conn = self.conn().await?;
        let rows = teams(&mut conn, tenant_id, page).await?;
        Ok(finish(rows, page.size, |t| Cursor {
            key: t.display_name.clone(),
            id: t.id.clone(),
        }))
    }

    /// Each of `users` with the ids of its teams, ascending; at most 500 users (one
    /// placeholder each).
    pub async fn with_team_ids(
        &self,
        users: Vec<UserRecord>,
    ) -> Result<Vec<(UserRecord, Vec<String>)>, GatewayError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        let mut conn = self.conn().await?;
        let mut teams = team_ids_of(&mut conn, &ids).await?;
        Ok(users
            .into_iter()
            .map(|user| {
                let team_ids = teams.remove(&user.id).unwrap_or_default();
                (user, team_ids)
            })
            .collect())
    }

    /// A page of the user ids of the members of team `team_id` of `tenant_id`, ascending;
    /// `None` when the tenant has no such team.
    pub async fn team_members(
        &self,
        tenant_id: &str,
        team_id: &str,
        page: &PageRequest,
    ) -> Result<Option<(Vec<String>, String)>, GatewayError> {
        let mut conn = self.conn().await?;
        if team_in(&mut conn, tenant_id, team_id).await?.is_none() {
            return Ok(None);
        }
        let rows = members(&mut conn, team_id, page).await?;
        Ok(Some(finish(rows, page.size, |id| Cursor {
            key: String::new(),
            id: id.clone(),
        })))
    }
}

impl Tx {
    /// Makes the transactions that delete `tenant_id`'s teams or give its users memberships
    /// take turns until commit, so that a membership is never written for a team deleted
    /// after it was checked (see [`Tx::serialize_on`]).
    pub async fn hold_teams(&mut self, tenant_id: &str) -> Result<(), GatewayError> {
        self.serialize_on(&format!("teams\n{tenant_id}")).await
    }

    /// Team `id` when it is one of `tenant_id`'s, read in the transaction.
    pub async fn team(
        &mut self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<TeamRecord>, GatewayError> {
        team_in(&mut self.tx, tenant_id, id).await
    }

    /// The ids among `ids` that are teams of `tenant_id`, read in the transaction.
    pub async fn teams_among(
        &mut self,
        tenant_id: &str,
        ids: &[String],
    ) -> Result<Vec<String>, GatewayError> {
        teams_among(&mut self.tx, tenant_id, ids).await
    }

    /// The team ids of user `user_id`, ascending, read in the transaction.
    pub async fn user_team_ids(&mut self, user_id: &str) -> Result<Vec<String>, GatewayError> {
        let mut teams = team_ids_of(&mut self.tx, &[user_id.to_owned()]).await?;
        Ok(teams.remove(user_id).unwrap_or_default())
    }

    /// Adds a team; ALREADY_EXISTS when the tenant has a team of that name, whatever its case.
    pub async fn insert_team(&mut self, team: &TeamRecord) -> Result<(), GatewayError> {
        sqlx::query(
            "INSERT INTO teams (id, tenant_id, display_name, name_key, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&team.id)
        .bind(&team.tenant_id)
        .bind(&team.display_name)
        .bind(name_key(&team.display_name))
        .bind(team.created_at)
        .execute(&mut *self.tx)
        .await
        .map_err(|err| name_taken(err, &team.display_name))?;
        Ok(())
    }

    /// Stores a team's name; ALREADY_EXISTS when another team of the tenant has it.
    pub async fn rename_team(&mut self, team: &TeamRecord) -> Result<(), GatewayError> {
        sqlx::query(
            "UPDATE teams SET display_name = $2, name_key = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(&team.id)
        .bind(&team.display_name)
        .bind(name_key(&team.display_name))
        .bind(now_micros())
        .execute(&mut *self.tx)
        .await
        .map_err(|err| name_taken(err, &team.display_name))?;
        Ok(())
    }

    /// Deletes team `id` and every membership of it.
    pub async fn delete_team(&mut self, id: &str) -> Result<(), GatewayError> {
        sqlx::query("DELETE FROM team_members WHERE team_id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Makes `team_ids` (teams of the user's tenant, checked by the caller) the teams of
    /// user `user_id`; the memberships it keeps are left as they were.
    pub async fn set_user_teams(
        &mut self,
        user_id: &str,
        team_ids: &[String],
    ) -> Result<(), GatewayError> {
        let sql = if team_ids.is_empty() {
            "DELETE FROM team_members WHERE user_id = $1".to_owned()
        } else {
            format!(
                "DELETE FROM team_members WHERE user_id = $1 AND team_id NOT IN ({})",
                placeholders(2, team_ids.len())
            )
        };
        let mut delete = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id);
        for team_id in team_ids {
            delete = delete.bind(team_id);
        }
        delete.execute(&mut *self.tx).await?;
        let now = now_micros();
        for team_id in team_ids {
            sqlx::query(
                "INSERT INTO team_members (team_id, user_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (team_id, user_id) DO NOTHING",
            )
            .bind(team_id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
}
