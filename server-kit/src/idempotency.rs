//! Safe retries of mutations (AIP-155): the response to a `request_id` is stored in the same
//! transaction as the change it reports, so a retry gets the first answer back and changes
//! nothing more.
//!
//! A record is scoped to its tenant, its caller and its RPC, so one caller's `request_id`
//! can neither reveal nor swallow another caller's request. It also keeps a fingerprint of
//! the request: the same `request_id` sent again with a different body is refused with
//! INVALID_ARGUMENT on `request_id` (reason `INVALID_ARGUMENT`) instead of answering for
//! another object. Records are kept for [`RequestLogConfig::retention_secs`] (24 hours by
//! default) and then deleted by [`spawn_purger`]; a `request_id` may be used again after that.
//!
//! Every service that uses it has this table in its migrations (`BYTEA` on PostgreSQL):
//!
//! ```sql
//! CREATE TABLE request_log (
//!     tenant_id   TEXT   NOT NULL,
//!     caller      TEXT   NOT NULL,
//!     method      TEXT   NOT NULL,
//!     request_id  TEXT   NOT NULL,
//!     fingerprint BLOB   NOT NULL,
//!     response    BLOB   NOT NULL,
//!     created_at  BIGINT NOT NULL,
//!     PRIMARY KEY (tenant_id, caller, method, request_id)
//! );
//! CREATE INDEX request_log_created_at ON request_log (created_at);
//! ```

use std::time::Duration;

use prost::Message;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;

use crate::db::{Db, now_micros};
use crate::identity::{Identity, IdentityKey, PrincipalKind};

/// The request field a reused key is reported on.
pub const FIELD: &str = "request_id";

/// Rows deleted per statement when purging, so a large backlog never holds a long lock.
const PURGE_BATCH: i64 = 500;

/// A keyed hash (HMAC-SHA256) of the request message as prost encodes it (deterministic for
/// equal messages, which carry no map fields), so a retry can be told from a different
/// request. Keyed because a request may carry a card number before masking: an unkeyed hash
/// of a request whose other fields are known could be reversed by trying the few missing
/// digits. The key is derived from the suite's identity secret, which every replica shares,
/// by [`use_identity_key`]; `serve` does it for every service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `request`.
    pub fn of<M: Message>(request: &M) -> Fingerprint {
        let bytes = request.encode_to_vec();
        match FINGERPRINT_KEY.get() {
            Some(key) => {
                let mut mac = key.clone();
                mac.update(&bytes);
                Fingerprint(mac.finalize().into_bytes().into())
            }
            // Only code that never served (store tests) gets here; nothing it stores is real.
            None => Fingerprint(Sha256::digest(&bytes).into()),
        }
    }
}

/// The HMAC key of fingerprints in this process; the first identity key set wins (every
/// service of a suite shares the same secret).
static FINGERPRINT_KEY: OnceLock<Hmac<Sha256>> = OnceLock::new();

/// Keys request fingerprints with a key derived from `key` (the suite's identity secret).
pub fn use_identity_key(key: &IdentityKey) {
    let derived = key.derive(b"switchboard request fingerprint v1");
    let _ = FINGERPRINT_KEY
        .set(Hmac::<Sha256>::new_from_slice(&derived).expect("HMAC accepts keys of any length"));
}

/// The caller part of a key: principal kind and id, so a user and an API key that happen to
/// share an id never share records.
pub fn caller_of(identity: &Identity) -> String {
    let kind = match identity.principal_kind {
        PrincipalKind::User => "user",
        PrincipalKind::ApiKey => "api_key",
        PrincipalKind::Service => "service",
    };
    format!("{kind}:{}", identity.principal_id)
}

/// Where a request's answer is recorded, and what the request was.
#[derive(Clone, Copy, Debug)]
pub struct RequestKey<'a> {
    /// The caller's tenant.
    pub tenant_id: &'a str,
    /// The caller, from [`caller_of`].
    pub caller: &'a str,
    /// The RPC.
    pub method: &'a str,
    /// The caller's `request_id`.
    pub request_id: &'a str,
    /// The request's [`Fingerprint`].
    pub fingerprint: Fingerprint,
}

/// What the log holds for a key.
#[derive(Debug, PartialEq)]
pub enum Recorded<M> {
    /// Nothing: the request is new.
    New,
    /// The same request was applied; this was its answer.
    Replay(M),
    /// The key was used for a request with another body.
    Reused,
}

impl<M> Recorded<M> {
    /// The answer to replay, if any; [`Reused`] when the key belongs to another request.
    pub fn into_replay(self, key: &RequestKey<'_>) -> Result<Option<M>, Reused> {
        match self {
            Recorded::New => Ok(None),
            Recorded::Replay(answer) => Ok(Some(answer)),
            Recorded::Reused => Err(Reused {
                request_id: key.request_id.to_owned(),
            }),
        }
    }
}

/// A `request_id` sent again with a different request; services answer it with
/// INVALID_ARGUMENT on [`FIELD`], reason `INVALID_ARGUMENT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{request_id} was already used for a different request; send a new request_id")]
pub struct Reused {
    /// The reused id.
    pub request_id: String,
}

/// Returns what was recorded under `key`: nothing, the answer of the same request, or
/// [`Recorded::Reused`] when the stored fingerprint differs.
pub async fn lookup<M: Message + Default>(
    conn: &mut AnyConnection,
    key: &RequestKey<'_>,
) -> Result<Recorded<M>, sqlx::Error> {
    let row: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT fingerprint, response FROM request_log \
         WHERE tenant_id = $1 AND caller = $2 AND method = $3 AND request_id = $4",
    )
    .bind(key.tenant_id)
    .bind(key.caller)
    .bind(key.method)
    .bind(key.request_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(Recorded::New),
        Some((fingerprint, _)) if fingerprint.as_slice() != key.fingerprint.0.as_slice() => {
            tracing::info!(
                tenant_id = %key.tenant_id,
                method = %key.method,
                request_id = %key.request_id,
                "request_id reused for a different request"
            );
            Ok(Recorded::Reused)
        }
        Some((_, response)) => M::decode(response.as_slice())
            .map(Recorded::Replay)
            .map_err(|e| sqlx::Error::Decode(Box::new(e))),
    }
}

/// Records the response of an applied request; call it in the transaction of the change. A
/// concurrent twin under the same key fails here with a unique violation.
pub async fn record<M: Message>(
    conn: &mut AnyConnection,
    key: &RequestKey<'_>,
    response: &M,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO request_log \
         (tenant_id, caller, method, request_id, fingerprint, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(key.tenant_id)
    .bind(key.caller)
    .bind(key.method)
    .bind(key.request_id)
    .bind(key.fingerprint.0.to_vec())
    .bind(response.encode_to_vec())
    .bind(now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How long answers are kept (`[request_log]` in a service's config file).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct RequestLogConfig {
    /// How long a `request_id` is remembered, in seconds: a retry within it gets the first
    /// answer; after it the record is deleted and the id may be used again.
    pub retention_secs: u64,
    /// How often records older than the retention are deleted, in milliseconds.
    pub purge_interval_ms: u64,
}

impl Default for RequestLogConfig {
    fn default() -> Self {
        RequestLogConfig {
            retention_secs: 24 * 60 * 60,
            purge_interval_ms: 10 * 60 * 1000,
        }
    }
}

impl RequestLogConfig {
    /// How long records are kept.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }

    /// The pause between two purges.
    pub fn purge_interval(&self) -> Duration {
        Duration::from_millis(self.purge_interval_ms.max(10))
    }
}

/// Deletes the records created before `cutoff` (microseconds since the epoch), in batches
/// of bounded size, and returns how many were deleted.
pub async fn purge(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    purge_in_batches(db, cutoff, PURGE_BATCH).await
}

async fn purge_in_batches(db: &Db, cutoff: i64, batch: i64) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM request_log WHERE (tenant_id, caller, method, request_id) IN ( \
             SELECT tenant_id, caller, method, request_id FROM request_log \
             WHERE created_at < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(db.writer())
        .await?
        .rows_affected();
        total += deleted;
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}

/// Purges records older than the retention now and then every `purge_interval`, until
/// `stop` is cancelled. A failed purge is logged and tried again at the next interval.
pub fn spawn_purger(
    db: Db,
    config: RequestLogConfig,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let retention = i64::try_from(config.retention().as_micros()).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        loop {
            let cutoff = now_micros().saturating_sub(retention);
            match purge(&db, cutoff).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "request log purged"),
                Err(err) => tracing::warn!(error = %err, "request log purge failed"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(config.purge_interval()) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Dialect;
    use prost_types::Timestamp;

    async fn create_table(db: &Db) {
        let blob = match db.dialect {
            Dialect::Sqlite => "BLOB",
            Dialect::Postgres => "BYTEA",
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE request_log (
                tenant_id TEXT NOT NULL,
                caller TEXT NOT NULL,
                method TEXT NOT NULL,
                request_id TEXT NOT NULL,
                fingerprint {blob} NOT NULL,
                response {blob} NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, caller, method, request_id)
            )"
        )))
        .execute(db.writer())
        .await
        .unwrap();
    }

    fn ts(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn key<'a>(tenant: &'a str, caller: &'a str, request_id: &'a str, body: i64) -> RequestKey<'a> {
        RequestKey {
            tenant_id: tenant,
            caller,
            method: "/pkg.S/M",
            request_id,
            fingerprint: Fingerprint::of(&ts(body)),
        }
    }

    async fn seen(db: &Db, key: &RequestKey<'_>) -> Recorded<Timestamp> {
        let mut conn = db.pool.acquire().await.unwrap();
        lookup(&mut conn, key).await.unwrap()
    }

    async fn count(db: &Db) -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM request_log")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        n
    }

    async fn backdate(db: &Db, request_id: &str, created_at: i64) {
        sqlx::query("UPDATE request_log SET created_at = $1 WHERE request_id = $2")
            .bind(created_at)
            .bind(request_id)
            .execute(db.writer())
            .await
            .unwrap();
    }

    async fn records_are_scoped_to_caller_and_request(db: &Db) {
        create_table(db).await;
        let rid = uuid::Uuid::new_v4().to_string();
        let first = key("t1", "user:alice", &rid, 1);

        let mut tx = db.begin().await.unwrap();
        assert_eq!(
            lookup::<Timestamp>(&mut tx, &first).await.unwrap(),
            Recorded::New
        );
        record(&mut tx, &first, &ts(100)).await.unwrap();
        tx.commit().await.unwrap();

        // The same request again is a retry.
        assert_eq!(seen(db, &first).await, Recorded::Replay(ts(100)));
        // Another caller of the same tenant has its own requests.
        assert_eq!(
            seen(db, &key("t1", "user:bob", &rid, 1)).await,
            Recorded::New
        );
        assert_eq!(
            seen(db, &key("t1", "api_key:alice", &rid, 1)).await,
            Recorded::New
        );
        // Another tenant or method is another request.
        assert_eq!(
            seen(db, &key("t2", "user:alice", &rid, 1)).await,
            Recorded::New
        );
        let other_method = RequestKey {
            method: "/pkg.S/N",
            ..first
        };
        assert_eq!(seen(db, &other_method).await, Recorded::New);
        // The same key with another body is refused, naming the id.
        let changed = key("t1", "user:alice", &rid, 2);
        let recorded = seen(db, &changed).await;
        assert_eq!(recorded, Recorded::Reused);
        let reused = recorded.into_replay(&changed).unwrap_err();
        assert!(
            reused
                .to_string()
                .starts_with(&format!("{rid} was already used for a different request"))
        );

        // A second caller's record lives beside the first.
        let bob = key("t1", "user:bob", &rid, 2);
        let mut conn = db.writer().acquire().await.unwrap();
        record(&mut conn, &bob, &ts(200)).await.unwrap();
        assert_eq!(seen(db, &bob).await, Recorded::Replay(ts(200)));
        assert_eq!(seen(db, &first).await, Recorded::Replay(ts(100)));
        // Recording twice under one key is a unique violation, whatever the body: a
        // concurrent duplicate loses its change.
        let err = record(&mut conn, &changed, &ts(300)).await.unwrap_err();
        assert!(crate::db::is_unique_violation(&err), "{err:?}");
    }

    async fn purge_deletes_only_records_older_than_the_cutoff(db: &Db) {
        create_table(db).await;
        let mut conn = db.writer().acquire().await.unwrap();
        let ids: Vec<String> = (0..7).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        for rid in &ids {
            record(&mut conn, &key("t1", "user:alice", rid, 1), &ts(1))
                .await
                .unwrap();
        }
        drop(conn);
        // Five old records (more than one batch of two), two recent ones.
        for rid in &ids[..5] {
            backdate(db, rid, 1_000).await;
        }
        let deleted = purge_in_batches(db, 2_000, 2).await.unwrap();
        assert_eq!(deleted, 5);
        assert_eq!(count(db).await, 2);
        assert_eq!(
            seen(db, &key("t1", "user:alice", &ids[0], 2)).await,
            Recorded::New
        );
        assert_eq!(
            seen(db, &key("t1", "user:alice", &ids[6], 1)).await,
            Recorded::Replay(ts(1))
        );
        assert_eq!(purge(db, 2_000).await.unwrap(), 0);
    }

    async fn purger_deletes_expired_records_until_stopped(db: &Db) {
        create_table(db).await;
        let (old, recent) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        let mut conn = db.writer().acquire().await.unwrap();
        for rid in [&old, &recent] {
            record(&mut conn, &key("t1", "user:alice", rid, 1), &ts(1))
                .await
                .unwrap();
        }
        drop(conn);
        backdate(db, &old, now_micros() - 2 * 3_600_000_000).await;

        let stop = CancellationToken::new();
        let config = RequestLogConfig {
            retention_secs: 3_600,
            purge_interval_ms: 10,
        };
        let purger = spawn_purger(db.clone(), config, stop.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while count(db).await != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the old record was not purged"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            seen(db, &key("t1", "user:alice", &recent, 1)).await,
            Recorded::Replay(ts(1))
        );
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), purger)
            .await
            .expect("the purger stops when cancelled")
            .unwrap();
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        assert_eq!(Fingerprint::of(&ts(1)), Fingerprint::of(&ts(1)));
        assert_ne!(Fingerprint::of(&ts(1)), Fingerprint::of(&ts(2)));
    }

    #[test]
    fn callers_of_different_kinds_differ() {
        let mut identity = Identity {
            tenant_id: "t1".into(),
            tenant_ancestry: Vec::new(),
            principal_id: "p1".into(),
            principal_kind: PrincipalKind::User,
            display_name: String::new(),
            roles: Vec::new(),
            enabled_supervisor_actions: Vec::new(),
            time_zone: String::new(),
            reopen_window_secs: 0,
        };
        let user = caller_of(&identity);
        identity.principal_kind = PrincipalKind::ApiKey;
        assert_ne!(user, caller_of(&identity));
    }

    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[tokio::test]
                    async fn $name() {
                        let db = crate::db::Db::connect("sqlite::memory:").await.unwrap();
                        super::$name(&db).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test]
                    async fn $name() {
                        let Some(pg) = crate::db::PostgresTestDb::create().await else {
                            return;
                        };
                        super::$name(&pg.db).await;
                        pg.drop().await;
                    }
                )*
            }
        };
    }

    on_both_backends!(
        records_are_scoped_to_caller_and_request,
        purge_deletes_only_records_older_than_the_cutoff,
        purger_deletes_expired_records_until_stopped,
    );
}

#[cfg(test)]
mod keyed_fingerprint_tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Note {
        #[prost(string, tag = "1")]
        text: String,
    }

    #[test]
    fn fingerprints_are_keyed_by_the_identity_secret() {
        let note = Note {
            text: "card 4111 1111 1111 1111".into(),
        };
        let unkeyed: [u8; 32] = Sha256::digest(note.encode_to_vec()).into();
        use_identity_key(&IdentityKey::new("0123456789abcdef-test-secret").unwrap());
        let keyed = Fingerprint::of(&note);
        assert_ne!(
            keyed.0, unkeyed,
            "a plain hash of a request with a card number could be reversed"
        );
        assert_eq!(Fingerprint::of(&note), keyed, "stable for equal requests");
        assert_ne!(
            Fingerprint::of(&Note {
                text: "card 4111 1111 1111 1112".into()
            }),
            keyed
        );
    }
}
