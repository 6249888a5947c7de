//! Status labels and canned responses ("smart phrases"), and the count of open
//! conversations by label.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use switchboard_server_kit::db::is_unique_violation;

use super::{Bind, Mutation, Store, bind_all};
use crate::domain::keys::{keyword_key, label_key, prefix_range};
use crate::domain::state::State;
use crate::error::{Error, Result};

/// A tenant-defined label set on conversations, such as "Awaiting refund".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLabel {
    /// UUID.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Text shown (card numbers masked); unique in the tenant regardless of case.
    pub display_name: String,
}

/// A phrase agents recall by keyword.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CannedResponse {
    /// UUID.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// What agents type to find it (masked); unique in the tenant regardless of case.
    pub keyword: String,
    /// The phrase (masked).
    pub text: String,
    /// Last change, microseconds since the epoch.
    pub update_time: i64,
}

/// How many conversations that are not CLOSED carry one label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCount {
    /// The label; empty for conversations without one.
    pub status_label_id: String,
    /// The label's name; empty for conversations without one.
    pub display_name: String,
    /// How many.
    pub open_conversations: i64,
}

const LABEL_SELECT: &str = "SELECT id, tenant_id, display_name FROM status_labels";
const PHRASE_SELECT: &str =
    "SELECT id, tenant_id, keyword, text, update_time FROM canned_responses";

fn label_from_row(row: &AnyRow) -> Result<StatusLabel> {
    Ok(StatusLabel {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        display_name: row.try_get("display_name")?,
    })
}

fn phrase_from_row(row: &AnyRow) -> Result<CannedResponse> {
    Ok(CannedResponse {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        keyword: row.try_get("keyword")?,
        text: row.try_get("text")?,
        update_time: row.try_get("update_time")?,
    })
}

fn label_taken(err: sqlx::Error, label: &StatusLabel) -> Error {
    if is_unique_violation(&err) {
        Error::AlreadyExists(format!(
            "a status label named {:?} already exists",
            label.display_name
        ))
    } else {
        Error::Storage(err)
    }
}

fn keyword_taken(err: sqlx::Error, phrase: &CannedResponse) -> Error {
    if is_unique_violation(&err) {
        Error::AlreadyExists(format!(
            "a canned response with keyword {:?} already exists",
            phrase.keyword
        ))
    } else {
        Error::Storage(err)
    }
}

impl Mutation {
    /// Inserts a label; ALREADY_EXISTS when the tenant has one of the same name.
    pub async fn insert_status_label(&mut self, label: &StatusLabel, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO status_labels (id, tenant_id, display_name, name_key, create_time, \
             update_time) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&label.id)
        .bind(&label.tenant_id)
        .bind(&label.display_name)
        .bind(label_key(&label.display_name))
        .bind(now)
        .execute(self.conn())
        .await
        .map_err(|err| label_taken(err, label))?;
        Ok(())
    }

    /// How many labels the tenant has.
    pub async fn count_status_labels(&mut self, tenant_id: &str) -> Result<i64> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM status_labels WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_one(self.conn())
                .await?;
        Ok(count)
    }

    /// The label `id` of `tenant_id`, locked until commit on PostgreSQL, so that it cannot
    /// be deleted while a conversation takes it.
    pub async fn status_label_for_update(
        &mut self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<StatusLabel>> {
        let sql = format!(
            "{LABEL_SELECT} l WHERE l.tenant_id = $1 AND l.id = $2{}",
            self.lock_clause("l")
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(label_from_row).transpose()
    }

    /// Renames a label; ALREADY_EXISTS when another label of the tenant has the name.
    pub async fn update_status_label(&mut self, label: &StatusLabel, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE status_labels SET display_name = $3, name_key = $4, update_time = $5 \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&label.tenant_id)
        .bind(&label.id)
        .bind(&label.display_name)
        .bind(label_key(&label.display_name))
        .bind(now)
        .execute(self.conn())
        .await
        .map_err(|err| label_taken(err, label))?;
        Ok(())
    }

    /// Deletes the label `id` of `tenant_id`; false when there is none. Conversations
    /// carrying it are left to the caller, which must clear them in the same transaction.
    pub async fn delete_status_label(&mut self, tenant_id: &str, id: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM status_labels WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(self.conn())
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }

    /// Ids of the tenant's conversations (in any state) carrying the label, by id.
    pub async fn conversations_with_label(
        &mut self,
        tenant_id: &str,
        label_id: &str,
    ) -> Result<Vec<String>> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM conversations WHERE tenant_id = $1 AND status_label_id = $2 \
             ORDER BY id",
        )
        .bind(tenant_id)
        .bind(label_id)
        .fetch_all(self.conn())
        .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// Inserts a canned response; ALREADY_EXISTS when the tenant has its keyword.
    pub async fn insert_canned_response(&mut self, phrase: &CannedResponse) -> Result<()> {
        sqlx::query(
            "INSERT INTO canned_responses (id, tenant_id, keyword, keyword_key, text, \
             create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&phrase.id)
        .bind(&phrase.tenant_id)
        .bind(&phrase.keyword)
        .bind(keyword_key(&phrase.keyword))
        .bind(&phrase.text)
        .bind(phrase.update_time)
        .execute(self.conn())
        .await
        .map_err(|err| keyword_taken(err, phrase))?;
        Ok(())
    }

    /// The canned response `id` of `tenant_id`, locked until commit on PostgreSQL.
    pub async fn canned_response_for_update(
        &mut self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<CannedResponse>> {
        let sql = format!(
            "{PHRASE_SELECT} p WHERE p.tenant_id = $1 AND p.id = $2{}",
            self.lock_clause("p")
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(phrase_from_row).transpose()
    }

    /// Writes a canned response's keyword, text and update time; ALREADY_EXISTS when
    /// another phrase of the tenant has the keyword.
    pub async fn update_canned_response(&mut self, phrase: &CannedResponse) -> Result<()> {
        sqlx::query(
            "UPDATE canned_responses SET keyword = $3, keyword_key = $4, text = $5, \
             update_time = $6 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&phrase.tenant_id)
        .bind(&phrase.id)
        .bind(&phrase.keyword)
        .bind(keyword_key(&phrase.keyword))
        .bind(&phrase.text)
        .bind(phrase.update_time)
        .execute(self.conn())
        .await
        .map_err(|err| keyword_taken(err, phrase))?;
        Ok(())
    }

    /// Deletes the canned response `id` of `tenant_id`; false when there is none.
    pub async fn delete_canned_response(&mut self, tenant_id: &str, id: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM canned_responses WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(self.conn())
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }
}

impl Store {
    /// The tenant's labels by name (case aside), after the label named `after` (the
    /// [`label_key`] of the last one of the previous page).
    pub async fn list_status_labels(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StatusLabel>> {
        let mut sql = format!("{LABEL_SELECT} WHERE tenant_id = $1");
        let mut binds = vec![Bind::Text(tenant_id.to_owned())];
        if let Some(after) = after {
            binds.push(Bind::Text(after.to_owned()));
            sql.push_str(&format!(" AND name_key > ${}", binds.len()));
        }
        binds.push(Bind::Int(limit));
        sql.push_str(&format!(" ORDER BY name_key LIMIT ${}", binds.len()));
        let mut conn = self.conn().await?;
        bind_all(sqlx::query(AssertSqlSafe(sql)), binds)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(label_from_row)
            .collect()
    }

    /// The label `id` of `tenant_id`, if any.
    pub async fn status_label(&self, tenant_id: &str, id: &str) -> Result<Option<StatusLabel>> {
        let sql = format!("{LABEL_SELECT} WHERE tenant_id = $1 AND id = $2");
        let mut conn = self.conn().await?;
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(label_from_row).transpose()
    }

    /// The tenant's canned responses whose keyword begins with `prefix` (case aside), by
    /// keyword, after the keyword whose [`keyword_key`] is `after`. A range over the
    /// (tenant_id, keyword_key) index: as fast with thousands of phrases as with ten.
    pub async fn search_canned_responses(
        &self,
        tenant_id: &str,
        prefix: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CannedResponse>> {
        let (start, end) = prefix_range(prefix);
        let mut sql = format!("{PHRASE_SELECT} WHERE tenant_id = $1 AND keyword_key >= $2");
        let mut binds = vec![Bind::Text(tenant_id.to_owned()), Bind::Text(start)];
        if let Some(end) = end {
            binds.push(Bind::Text(end));
            sql.push_str(&format!(" AND keyword_key < ${}", binds.len()));
        }
        if let Some(after) = after {
            binds.push(Bind::Text(after.to_owned()));
            sql.push_str(&format!(" AND keyword_key > ${}", binds.len()));
        }
        binds.push(Bind::Int(limit));
        sql.push_str(&format!(" ORDER BY keyword_key LIMIT ${}", binds.len()));
        let mut conn = self.conn().await?;
        bind_all(sqlx::query(AssertSqlSafe(sql)), binds)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(phrase_from_row)
            .collect()
    }

    /// The tenant's conversations that are not CLOSED (only those of `queue_id` when
    /// given), counted by label: one row per label carrying any, by name (case aside), then
    /// always the row of those without a label.
    pub async fn count_by_status(
        &self,
        tenant_id: &str,
        queue_id: Option<&str>,
    ) -> Result<Vec<StatusCount>> {
        let mut sql = "SELECT c.status_label_id, COALESCE(l.display_name, '') AS display_name, \
             COUNT(*) AS open_conversations FROM conversations c \
             LEFT JOIN status_labels l ON l.tenant_id = c.tenant_id AND l.id = c.status_label_id \
             WHERE c.tenant_id = $1 AND c.state <> $2"
            .to_owned();
        let mut binds = vec![
            Bind::Text(tenant_id.to_owned()),
            Bind::Int(i64::from(State::Closed.code())),
        ];
        if let Some(queue_id) = queue_id {
            binds.push(Bind::Text(queue_id.to_owned()));
            sql.push_str(&format!(" AND c.queue_id = ${}", binds.len()));
        }
        sql.push_str(" GROUP BY c.status_label_id, l.display_name");
        let mut conn = self.conn().await?;
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), binds)
            .fetch_all(&mut *conn)
            .await?;
        let mut none = StatusCount {
            status_label_id: String::new(),
            display_name: String::new(),
            open_conversations: 0,
        };
        let mut labelled = Vec::with_capacity(rows.len());
        for row in &rows {
            let count = StatusCount {
                status_label_id: row.try_get("status_label_id")?,
                display_name: row.try_get("display_name")?,
                open_conversations: row.try_get("open_conversations")?,
            };
            if count.status_label_id.is_empty() {
                none = count;
            } else {
                labelled.push(count);
            }
        }
        labelled.sort_by_cached_key(|c| (label_key(&c.display_name), c.status_label_id.clone()));
        labelled.push(none);
        Ok(labelled)
    }
}
