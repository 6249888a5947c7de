//! Safe retries of mutations: the response to a `request_id` is stored in the same
//! transaction as the change it reports, so a retry gets the first answer back and changes
//! nothing more.
//!
//! Every service that uses it has this table in its migrations (`BYTEA` on PostgreSQL):
//!
//! ```sql
//! CREATE TABLE request_log (
//!     tenant_id  TEXT   NOT NULL,
//!     method     TEXT   NOT NULL,
//!     request_id TEXT   NOT NULL,
//!     response   BLOB   NOT NULL,
//!     created_at BIGINT NOT NULL,
//!     PRIMARY KEY (tenant_id, method, request_id)
//! );
//! ```

use prost::Message;
use sqlx::AnyConnection;

use crate::db::now_micros;

/// Returns the response recorded for this request, if the request was already applied.
pub async fn lookup<M: Message + Default>(
    conn: &mut AnyConnection,
    tenant_id: &str,
    method: &str,
    request_id: &str,
) -> Result<Option<M>, sqlx::Error> {
    let row: Option<(Vec<u8>,)> = sqlx::query_as(
        "SELECT response FROM request_log WHERE tenant_id = $1 AND method = $2 AND request_id = $3",
    )
    .bind(tenant_id)
    .bind(method)
    .bind(request_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(bytes,)| M::decode(bytes.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

/// Records the response of an applied request; call it in the transaction of the change.
pub async fn record<M: Message>(
    conn: &mut AnyConnection,
    tenant_id: &str,
    method: &str,
    request_id: &str,
    response: &M,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO request_log (tenant_id, method, request_id, response, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant_id)
    .bind(method)
    .bind(request_id)
    .bind(response.encode_to_vec())
    .bind(now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, Dialect};

    async fn create_table(db: &Db) {
        let blob = match db.dialect {
            Dialect::Sqlite => "BLOB",
            Dialect::Postgres => "BYTEA",
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE request_log (
                tenant_id TEXT NOT NULL,
                method TEXT NOT NULL,
                request_id TEXT NOT NULL,
                response {blob} NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, method, request_id)
            )"
        )))
        .execute(&db.pool)
        .await
        .unwrap();
    }

    async fn replay_returns_the_first_response(db: &Db) {
        create_table(db).await;
        let request_id = uuid::Uuid::new_v4().to_string();
        let first = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };

        let mut tx = db.begin().await.unwrap();
        let seen: Option<prost_types::Timestamp> = lookup(&mut tx, "t1", "/pkg.S/M", &request_id)
            .await
            .unwrap();
        assert_eq!(seen, None);
        record(&mut tx, "t1", "/pkg.S/M", &request_id, &first)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let mut conn = db.pool.acquire().await.unwrap();
        let replay: Option<prost_types::Timestamp> =
            lookup(&mut conn, "t1", "/pkg.S/M", &request_id)
                .await
                .unwrap();
        assert_eq!(replay, Some(first));
        // The same request id in another tenant or method is a different request.
        let other_tenant: Option<prost_types::Timestamp> =
            lookup(&mut conn, "t2", "/pkg.S/M", &request_id)
                .await
                .unwrap();
        assert_eq!(other_tenant, None);
        let other_method: Option<prost_types::Timestamp> =
            lookup(&mut conn, "t1", "/pkg.S/N", &request_id)
                .await
                .unwrap();
        assert_eq!(other_method, None);
        // Recording twice is a unique violation: a concurrent duplicate loses its change.
        let err = record(&mut conn, "t1", "/pkg.S/M", &request_id, &first)
            .await
            .unwrap_err();
        assert!(crate::db::is_unique_violation(&err), "{err:?}");
    }

    #[tokio::test]
    async fn sqlite_replay_returns_the_first_response() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        replay_returns_the_first_response(&db).await;
    }

    #[tokio::test]
    async fn postgres_replay_returns_the_first_response() {
        let Some(pg) = crate::db::PostgresTestDb::create().await else {
            return;
        };
        replay_returns_the_first_response(&pg.db).await;
        pg.drop().await;
    }
}
