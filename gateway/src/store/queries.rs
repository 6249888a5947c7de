//! The directory's SQL, written once for SQLite and PostgreSQL, on any connection (pooled or
//! inside a transaction).

use std::time::Duration;

use sqlx::AnyConnection;
use switchboard_proto::directory::v1::Role;
use switchboard_server_kit::db::{is_unique_violation, now_micros};

use super::{ApiKeyRecord, AuditRecord, SettingsRecord, TenantRecord, UserRecord};
use crate::domain::directory::{
    actions_from_text, actions_to_text, role_name, roles_from_text, roles_to_text,
};
use crate::domain::page::PageRequest;
use crate::error::GatewayError;

/// Deepest tenant hierarchy followed, a guard against a cycle in corrupt data.
const MAX_TENANT_DEPTH: i64 = 32;

type TenantRow = (String, Option<String>, String, i64);

fn tenant_of(row: TenantRow) -> TenantRecord {
    let (id, parent_tenant_id, display_name, created_at) = row;
    TenantRecord {
        id,
        parent_tenant_id,
        display_name,
        created_at,
    }
}

pub async fn tenant(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<TenantRecord>, GatewayError> {
    let row: Option<TenantRow> = sqlx::query_as(
        "SELECT id, parent_tenant_id, display_name, created_at FROM tenants WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(tenant_of))
}

pub async fn ancestry(conn: &mut AnyConnection, id: &str) -> Result<Vec<String>, GatewayError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "WITH RECURSIVE chain (id, parent_tenant_id, depth) AS ( \
             SELECT id, parent_tenant_id, 0 FROM tenants WHERE id = $1 \
             UNION ALL \
             SELECT t.id, t.parent_tenant_id, c.depth + 1 \
             FROM tenants t JOIN chain c ON t.id = c.parent_tenant_id \
             WHERE c.depth < $2 \
         ) \
         SELECT id FROM chain WHERE depth > 0 ORDER BY depth",
    )
    .bind(id)
    .bind(MAX_TENANT_DEPTH as i32)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

pub async fn upsert_tenant(
    conn: &mut AnyConnection,
    tenant: &TenantRecord,
) -> Result<(), GatewayError> {
    sqlx::query(
        "INSERT INTO tenants (id, parent_tenant_id, display_name, created_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET \
             parent_tenant_id = excluded.parent_tenant_id, \
             display_name = excluded.display_name",
    )
    .bind(&tenant.id)
    .bind(&tenant.parent_tenant_id)
    .bind(&tenant.display_name)
    .bind(tenant.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn insert_tenant(
    conn: &mut AnyConnection,
    tenant: &TenantRecord,
) -> Result<(), GatewayError> {
    sqlx::query(
        "INSERT INTO tenants (id, parent_tenant_id, display_name, created_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&tenant.id)
    .bind(&tenant.parent_tenant_id)
    .bind(&tenant.display_name)
    .bind(tenant.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn child_tenants(
    conn: &mut AnyConnection,
    parent: &str,
    page: &PageRequest,
) -> Result<Vec<TenantRecord>, GatewayError> {
    let (after_name, after_id) = page
        .after
        .as_ref()
        .map(|c| (c.key.clone(), c.id.clone()))
        .unwrap_or_default();
    let rows: Vec<TenantRow> = sqlx::query_as(
        "SELECT id, parent_tenant_id, display_name, created_at FROM tenants \
         WHERE parent_tenant_id = $1 \
           AND (display_name > $2 OR (display_name = $2 AND id > $3)) \
         ORDER BY display_name, id LIMIT $4",
    )
    .bind(parent)
    .bind(after_name)
    .bind(after_id)
    .bind(page.size as i64 + 1)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(tenant_of).collect())
}

pub async fn top_level_tenants(
    conn: &mut AnyConnection,
    page: &PageRequest,
) -> Result<Vec<TenantRecord>, GatewayError> {
    let (after_name, after_id) = page
        .after
        .as_ref()
        .map(|c| (c.key.clone(), c.id.clone()))
        .unwrap_or_default();
    let rows: Vec<TenantRow> = sqlx::query_as(
        "SELECT id, parent_tenant_id, display_name, created_at FROM tenants \
         WHERE parent_tenant_id IS NULL \
           AND (display_name > $1 OR (display_name = $1 AND id > $2)) \
         ORDER BY display_name, id LIMIT $3",
    )
    .bind(after_name)
    .bind(after_id)
    .bind(page.size as i64 + 1)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(tenant_of).collect())
}

pub async fn settings(
    conn: &mut AnyConnection,
    tenant_id: &str,
) -> Result<SettingsRecord, GatewayError> {
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT enabled_supervisor_actions, reopen_window_seconds, time_zone \
         FROM tenant_settings WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        None => SettingsRecord::defaults(tenant_id),
        Some((actions, reopen_window_seconds, time_zone)) => SettingsRecord {
            tenant_id: tenant_id.to_owned(),
            enabled_supervisor_actions: actions_from_text(&actions),
            reopen_window: Duration::from_secs(reopen_window_seconds.max(0) as u64),
            time_zone,
        },
    })
}

pub async fn upsert_settings(
    conn: &mut AnyConnection,
    settings: &SettingsRecord,
) -> Result<(), GatewayError> {
    sqlx::query(
        "INSERT INTO tenant_settings \
             (tenant_id, enabled_supervisor_actions, reopen_window_seconds, time_zone, updated_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id) DO UPDATE SET \
             enabled_supervisor_actions = excluded.enabled_supervisor_actions, \
             reopen_window_seconds = excluded.reopen_window_seconds, \
             time_zone = excluded.time_zone, \
             updated_at = excluded.updated_at",
    )
    .bind(&settings.tenant_id)
    .bind(actions_to_text(&settings.enabled_supervisor_actions))
    .bind(settings.reopen_window.as_secs() as i64)
    .bind(&settings.time_zone)
    .bind(now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

type UserRow = (String, String, String, String, String, i64, i64);

const USER_COLUMNS: &str = "id, tenant_id, display_name, email, roles, active, created_at";

fn user_of(row: UserRow) -> UserRecord {
    let (id, tenant_id, display_name, email, roles, active, created_at) = row;
    UserRecord {
        id,
        tenant_id,
        display_name,
        email,
        roles: roles_from_text(&roles),
        active: active != 0,
        created_at,
    }
}

fn email_taken(err: sqlx::Error, email: &str) -> GatewayError {
    if is_unique_violation(&err) {
        GatewayError::AlreadyExists(format!("email {email} is already taken"))
    } else {
        err.into()
    }
}

pub async fn user(conn: &mut AnyConnection, id: &str) -> Result<Option<UserRecord>, GatewayError> {
    let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(user_of))
}

pub async fn insert_user(conn: &mut AnyConnection, user: &UserRecord) -> Result<(), GatewayError> {
    sqlx::query(
        "INSERT INTO users (id, tenant_id, display_name, email, roles, active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&user.id)
    .bind(&user.tenant_id)
    .bind(&user.display_name)
    .bind(&user.email)
    .bind(roles_to_text(&user.roles))
    .bind(i64::from(user.active))
    .bind(user.created_at)
    .execute(&mut *conn)
    .await
    .map_err(|err| email_taken(err, &user.email))?;
    Ok(())
}

pub async fn upsert_user(conn: &mut AnyConnection, user: &UserRecord) -> Result<(), GatewayError> {
    sqlx::query(
        "INSERT INTO users (id, tenant_id, display_name, email, roles, active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (id) DO UPDATE SET \
             tenant_id = excluded.tenant_id, \
             display_name = excluded.display_name, \
             email = excluded.email, \
             roles = excluded.roles, \
             active = excluded.active, \
             updated_at = excluded.updated_at",
    )
    .bind(&user.id)
    .bind(&user.tenant_id)
    .bind(&user.display_name)
    .bind(&user.email)
    .bind(roles_to_text(&user.roles))
    .bind(i64::from(user.active))
    .bind(user.created_at)
    .execute(&mut *conn)
    .await
    .map_err(|err| email_taken(err, &user.email))?;
    Ok(())
}

pub async fn update_user(conn: &mut AnyConnection, user: &UserRecord) -> Result<(), GatewayError> {
    sqlx::query(
        "UPDATE users SET display_name = $2, roles = $3, active = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(&user.id)
    .bind(&user.display_name)
    .bind(roles_to_text(&user.roles))
    .bind(i64::from(user.active))
    .bind(now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `count` numbered placeholders from `$first` on, for an `IN (…)` list: `$2, $3, $4`.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The users among `ids` that belong to `tenant_id`; ids of other tenants or of no user
/// are left out. `ids` is bounded by the caller (one placeholder each).
pub async fn users_by_ids(
    conn: &mut AnyConnection,
    tenant_id: &str,
    ids: &[String],
) -> Result<Vec<UserRecord>, GatewayError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = placeholders(2, ids.len());
    let sql =
        format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id IN ({placeholders})");
    let mut query = sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql)).bind(tenant_id);
    for id in ids {
        query = query.bind(id);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(user_of).collect())
}

/// A page of the users of `tenant_id` by name, only those with `role` and only members of
/// `team_id` when given.
pub async fn users(
    conn: &mut AnyConnection,
    tenant_id: &str,
    role: Option<Role>,
    team_id: Option<&str>,
    page: &PageRequest,
) -> Result<Vec<UserRecord>, GatewayError> {
    let (after_name, after_id) = page
        .after
        .as_ref()
        .map(|c| (c.key.clone(), c.id.clone()))
        .unwrap_or_default();
    let role_pattern = match role.and_then(role_name) {
        Some(name) => format!("%,{name},%"),
        None => "%".to_owned(),
    };
    let rows: Vec<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users \
         WHERE tenant_id = $1 \
           AND (',' || roles || ',') LIKE $2 \
           AND (display_name > $3 OR (display_name = $3 AND id > $4)) \
           AND ($6 = '' OR id IN (SELECT user_id FROM team_members WHERE team_id = $6)) \
         ORDER BY display_name, id LIMIT $5"
    )))
    .bind(tenant_id)
    .bind(role_pattern)
    .bind(after_name)
    .bind(after_id)
    .bind(page.size as i64 + 1)
    .bind(team_id.unwrap_or_default())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(user_of).collect())
}

pub async fn has_active_user_with_role(
    conn: &mut AnyConnection,
    tenant_id: &str,
    role: Role,
) -> Result<bool, GatewayError> {
    let pattern = format!("%,{},%", role_name(role).unwrap_or_default());
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM users \
         WHERE tenant_id = $1 AND active = 1 AND (',' || roles || ',') LIKE $2 LIMIT 1",
    )
    .bind(tenant_id)
    .bind(pattern)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

type ApiKeyRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
);

const API_KEY_COLUMNS: &str =
    "id, tenant_id, display_name, roles, prefix, secret_sha256, created_at, revoked_at";

fn api_key_of(row: ApiKeyRow) -> ApiKeyRecord {
    let (id, tenant_id, display_name, roles, prefix, secret_sha256, created_at, revoked_at) = row;
    ApiKeyRecord {
        id,
        tenant_id,
        display_name,
        roles: roles_from_text(&roles),
        prefix,
        secret_sha256,
        created_at,
        revoked_at,
    }
}

pub async fn api_key(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<ApiKeyRecord>, GatewayError> {
    let row: Option<ApiKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(api_key_of))
}

pub async fn insert_api_key(
    conn: &mut AnyConnection,
    key: &ApiKeyRecord,
) -> Result<(), GatewayError> {
    sqlx::query(
        "INSERT INTO api_keys \
             (id, tenant_id, display_name, roles, prefix, secret_sha256, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&key.id)
    .bind(&key.tenant_id)
    .bind(&key.display_name)
    .bind(roles_to_text(&key.roles))
    .bind(&key.prefix)
    .bind(&key.secret_sha256)
    .bind(key.created_at)
    .bind(key.revoked_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn upsert_api_key(
    conn: &mut AnyConnection,
    key: &ApiKeyRecord,
) -> Result<(), GatewayError> {
    sqlx::query(
        "INSERT INTO api_keys \
             (id, tenant_id, display_name, roles, prefix, secret_sha256, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET \
             tenant_id = excluded.tenant_id, \
             display_name = excluded.display_name, \
             roles = excluded.roles, \
             prefix = excluded.prefix, \
             secret_sha256 = excluded.secret_sha256, \
             revoked_at = excluded.revoked_at",
    )
    .bind(&key.id)
    .bind(&key.tenant_id)
    .bind(&key.display_name)
    .bind(roles_to_text(&key.roles))
    .bind(&key.prefix)
    .bind(&key.secret_sha256)
    .bind(key.created_at)
    .bind(key.revoked_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn revoke_api_key(
    conn: &mut AnyConnection,
    id: &str,
    at: i64,
) -> Result<(), GatewayError> {
    sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Keyset bounds of a newest-first page: before the cursor, or everything.
fn newest_first_bounds(page: &PageRequest) -> Result<(i64, String), GatewayError> {
    match &page.after {
        None => Ok((i64::MAX, String::new())),
        Some(cursor) => {
            let at = cursor.key.parse::<i64>().map_err(|_| {
                crate::domain::directory::FieldError::new(
                    "page_token",
                    "is not a token returned by this method",
                )
            })?;
            Ok((at, cursor.id.clone()))
        }
    }
}

pub async fn api_keys(
    conn: &mut AnyConnection,
    tenant_id: &str,
    page: &PageRequest,
) -> Result<Vec<ApiKeyRecord>, GatewayError> {
    let (before_at, before_id) = newest_first_bounds(page)?;
    let rows: Vec<ApiKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys \
         WHERE tenant_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    )))
    .bind(tenant_id)
    .bind(before_at)
    .bind(before_id)
    .bind(page.size as i64 + 1)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(api_key_of).collect())
}

pub async fn insert_audit(
    conn: &mut AnyConnection,
    entry: &AuditRecord,
) -> Result<(), GatewayError> {
    sqlx::query(
        "INSERT INTO audit_log (id, tenant_id, actor_id, method, target_id, request_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&entry.id)
    .bind(&entry.tenant_id)
    .bind(&entry.actor_id)
    .bind(&entry.method)
    .bind(&entry.target_id)
    .bind(&entry.request_id)
    .bind(entry.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn audit_entries(
    conn: &mut AnyConnection,
    tenant_id: &str,
    page: &PageRequest,
) -> Result<Vec<AuditRecord>, GatewayError> {
    let (before_at, before_id) = newest_first_bounds(page)?;
    let rows: Vec<(String, String, String, String, String, String, i64)> = sqlx::query_as(
        "SELECT id, tenant_id, actor_id, method, target_id, request_id, created_at FROM audit_log \
         WHERE tenant_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(tenant_id)
    .bind(before_at)
    .bind(before_id)
    .bind(page.size as i64 + 1)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, tenant_id, actor_id, method, target_id, request_id, created_at)| AuditRecord {
                id,
                tenant_id,
                actor_id,
                method,
                target_id,
                request_id,
                created_at,
            },
        )
        .collect())
}
