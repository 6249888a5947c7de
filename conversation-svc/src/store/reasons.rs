//! Wrap-up reasons and dispositions, with the queues that offer them.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use switchboard_server_kit::db::is_unique_violation;

use super::{Bind, Mutation, Store, WrapUpReason, bind_all, placeholders};
use crate::error::{Error, Result};

const REASON_SELECT: &str = "SELECT r.id, r.tenant_id, r.display_name, r.marks_transferred, \
     r.active, r.code FROM wrap_up_reasons r";

fn reason_from_row(row: &AnyRow) -> Result<WrapUpReason> {
    Ok(WrapUpReason {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        queue_ids: Vec::new(),
        display_name: row.try_get("display_name")?,
        marks_transferred: row.try_get::<i64, _>("marks_transferred")? != 0,
        active: row.try_get::<i64, _>("active")? != 0,
        code: row.try_get("code")?,
    })
}

async fn attach_queues(conn: &mut AnyConnection, reasons: &mut [WrapUpReason]) -> Result<()> {
    if reasons.is_empty() {
        return Ok(());
    }
    let index: HashMap<String, usize> = reasons
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    let sql = format!(
        "SELECT reason_id, queue_id FROM wrap_up_reason_queues WHERE reason_id IN ({}) \
         ORDER BY reason_id, queue_id",
        placeholders(1, reasons.len())
    );
    let binds = reasons.iter().map(|r| Bind::Text(r.id.clone())).collect();
    for row in bind_all(sqlx::query(AssertSqlSafe(sql)), binds)
        .fetch_all(&mut *conn)
        .await?
    {
        let reason: String = row.try_get("reason_id")?;
        reasons[index[&reason]]
            .queue_ids
            .push(row.try_get("queue_id")?);
    }
    Ok(())
}

async fn insert_queues(conn: &mut AnyConnection, reason: &WrapUpReason) -> Result<()> {
    for queue_id in &reason.queue_ids {
        sqlx::query("INSERT INTO wrap_up_reason_queues (reason_id, queue_id) VALUES ($1, $2)")
            .bind(&reason.id)
            .bind(queue_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn name_taken(err: sqlx::Error, reason: &WrapUpReason) -> Error {
    if !is_unique_violation(&err) {
        return Error::Storage(err);
    }
    let name = &reason.display_name;
    if reason.code.is_empty() {
        Error::AlreadyExists(format!("a wrap-up reason named {name:?} already exists"))
    } else {
        let code = &reason.code;
        Error::AlreadyExists(format!(
            "a wrap-up reason named {name:?} or with code {code:?} already exists"
        ))
    }
}

impl Mutation {
    /// Inserts a reason; ALREADY_EXISTS when the tenant has one of the same name.
    pub async fn insert_reason(&mut self, reason: &WrapUpReason, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO wrap_up_reasons (id, tenant_id, display_name, marks_transferred, active, \
             create_time, update_time, code) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(&reason.id)
        .bind(&reason.tenant_id)
        .bind(&reason.display_name)
        .bind(i64::from(reason.marks_transferred))
        .bind(i64::from(reason.active))
        .bind(now)
        .bind(&reason.code)
        .execute(self.conn())
        .await
        .map_err(|err| name_taken(err, reason))?;
        insert_queues(self.conn(), reason).await
    }

    /// Reasons of `tenant_id` among `ids` (unknown ones are simply absent).
    pub async fn reasons_by_ids(
        &mut self,
        tenant_id: &str,
        ids: &[String],
    ) -> Result<Vec<WrapUpReason>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{REASON_SELECT} WHERE r.tenant_id = $1 AND r.id IN ({})",
            placeholders(2, ids.len())
        );
        let mut binds = vec![Bind::Text(tenant_id.to_owned())];
        binds.extend(ids.iter().cloned().map(Bind::Text));
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), binds)
            .fetch_all(self.conn())
            .await?;
        let mut reasons = rows
            .iter()
            .map(reason_from_row)
            .collect::<Result<Vec<_>>>()?;
        attach_queues(self.conn(), &mut reasons).await?;
        Ok(reasons)
    }

    /// Replaces a reason's fields and queues.
    pub async fn update_reason(&mut self, reason: &WrapUpReason, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE wrap_up_reasons SET display_name = $2, marks_transferred = $3, active = $4, \
             update_time = $5, code = $6 WHERE id = $1",
        )
        .bind(&reason.id)
        .bind(&reason.display_name)
        .bind(i64::from(reason.marks_transferred))
        .bind(i64::from(reason.active))
        .bind(now)
        .bind(&reason.code)
        .execute(self.conn())
        .await
        .map_err(|err| name_taken(err, reason))?;
        sqlx::query("DELETE FROM wrap_up_reason_queues WHERE reason_id = $1")
            .bind(&reason.id)
            .execute(self.conn())
            .await?;
        insert_queues(self.conn(), reason).await
    }
}

impl Store {
    /// Reasons of a tenant by name (then id), after the (name, id) of `after`; only those
    /// offered in `queue_id` when given, only active ones unless `include_inactive`.
    pub async fn list_reasons(
        &self,
        tenant_id: &str,
        queue_id: Option<&str>,
        include_inactive: bool,
        after: Option<(String, String)>,
        limit: i64,
    ) -> Result<Vec<WrapUpReason>> {
        let mut sql = format!("{REASON_SELECT} WHERE r.tenant_id = $1");
        let mut binds = vec![Bind::Text(tenant_id.to_owned())];
        if !include_inactive {
            sql.push_str(" AND r.active = 1");
        }
        if let Some(queue_id) = queue_id {
            binds.push(Bind::Text(queue_id.to_owned()));
            sql.push_str(&format!(
                " AND (NOT EXISTS (SELECT 1 FROM wrap_up_reason_queues q WHERE q.reason_id = r.id) \
                 OR EXISTS (SELECT 1 FROM wrap_up_reason_queues q WHERE q.reason_id = r.id \
                 AND q.queue_id = ${}))",
                binds.len()
            ));
        }
        if let Some((name, id)) = after {
            binds.push(Bind::Text(name));
            let n = binds.len();
            binds.push(Bind::Text(id));
            let i = binds.len();
            sql.push_str(&format!(
                " AND (r.display_name > ${n} OR (r.display_name = ${n} AND r.id > ${i}))"
            ));
        }
        binds.push(Bind::Int(limit));
        sql.push_str(&format!(
            " ORDER BY r.display_name, r.id LIMIT ${}",
            binds.len()
        ));
        let mut conn = self.conn().await?;
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), binds)
            .fetch_all(&mut *conn)
            .await?;
        let mut reasons = rows
            .iter()
            .map(reason_from_row)
            .collect::<Result<Vec<_>>>()?;
        attach_queues(&mut conn, &mut reasons).await?;
        Ok(reasons)
    }

    /// One reason of a tenant.
    pub async fn reason(&self, tenant_id: &str, id: &str) -> Result<Option<WrapUpReason>> {
        let mut conn = self.conn().await?;
        let sql = format!("{REASON_SELECT} WHERE r.tenant_id = $1 AND r.id = $2");
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let mut reasons = [reason_from_row(&row)?];
        attach_queues(&mut conn, &mut reasons).await?;
        let [reason] = reasons;
        Ok(Some(reason))
    }
}
