//! conversation-svc's tables, over sqlx's `Any` driver on SQLite or PostgreSQL.
//!
//! Reads go through [`Store`]; every change goes through a [`Mutation`], one write
//! transaction that also records the events of the change, the calls to routing-svc it
//! decides (the command outbox) and the response for the request's `request_id`, so that
//! all of them commit or none does.

mod config;
mod conversations;
mod events;
mod history;
mod invitations;
mod ongoing;
mod outbox;
mod placement;
mod reasons;
mod records;
mod transfers;
mod wrap_up;

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, Transaction};
use switchboard_server_kit::changes::{self, Changes};
use switchboard_server_kit::idempotency::{self, Recorded};
use switchboard_server_kit::{Db, Dialect};

pub use config::{CannedResponse, StatusCount, StatusLabel};
pub use conversations::{AppliedOffer, ConversationQuery};
pub use invitations::Invitation;
pub use ongoing::{Changed, OngoingFilter};
pub use outbox::{BACKLOG_RETRY_AFTER, Backlog};
pub use records::*;
pub use switchboard_server_kit::idempotency::RequestKey;
pub use transfers::Transfer;

use crate::error::{Error, Result};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// Access to conversation-svc's database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    changes: Changes<Topic>,
    backlog: Arc<Backlog>,
}

impl Store {
    /// Connects to `url`, applies the migrations and returns the store.
    pub async fn open(url: &str) -> Result<Store, anyhow::Error> {
        let db = Db::connect(url).await?;
        db.migrate(&SQLITE, &POSTGRES).await?;
        Ok(Store::new(db))
    }

    /// A store over an already migrated database.
    pub fn new(db: Db) -> Store {
        Store {
            db,
            changes: Changes::new(),
            backlog: Arc::default(),
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Mutation> {
        Ok(Mutation {
            tx: self.db.begin().await?,
            dialect: self.db.dialect,
            events: Vec::new(),
            numbering: HashMap::new(),
            commands: Vec::new(),
            changes: self.changes.clone(),
            backlog: self.backlog.clone(),
        })
    }

    /// The change notices streams wait on; commits of this process publish to them.
    pub fn changes(&self) -> &Changes<Topic> {
        &self.changes
    }

    /// Follows the event log for other replicas' commits until `stop`, reading every
    /// `poll` while any stream listens. Call before serving: it reads where to start.
    pub async fn follow_changes(
        &self,
        poll: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let cursor = self.last_sequence().await?;
        let end = self.clone();
        let read = self.clone();
        Ok(changes::spawn_follower(
            self.changes.clone(),
            poll,
            stop,
            cursor,
            move || {
                let store = end.clone();
                async move { store.last_sequence().await }
            },
            move |cursor| {
                let store = read.clone();
                async move { store.topics_after(cursor, changes::FOLLOW_BATCH).await }
            },
        ))
    }

    /// The recorded response of an already applied request, outside any transaction; the
    /// same key with another request is INVALID_ARGUMENT on `request_id`.
    pub async fn replay<M: prost::Message + Default>(
        &self,
        key: RequestKey<'_>,
    ) -> Result<Option<M>> {
        let mut conn = self.db.pool.acquire().await?;
        replayed(idempotency::lookup(&mut conn, &key).await?, &key)
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Any>> {
        Ok(self.db.pool.acquire().await?)
    }
}

/// What the request log holds for `key`, as the answer to replay or the refusal of a
/// reused `request_id`.
fn replayed<M>(recorded: Recorded<M>, key: &RequestKey<'_>) -> Result<Option<M>> {
    recorded
        .into_replay(key)
        .map_err(|reused| Error::invalid(idempotency::FIELD, reused.to_string()))
}

/// What a live stream shows: a commit wakes the streams watching its events' topics
/// (see `switchboard_server_kit::changes`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Every event (the internal Subscribe).
    Log,
    /// One conversation's events (StreamConversation).
    Conversation(String),
    /// Every event of one tenant (StreamOngoingConversations).
    Tenant(String),
}

/// The topics of an event of `conversation_id` in `tenant_id`.
pub fn topics(tenant_id: &str, conversation_id: &str) -> [Topic; 3] {
    [
        Topic::Log,
        Topic::Conversation(conversation_id.to_owned()),
        Topic::Tenant(tenant_id.to_owned()),
    ]
}

/// One write transaction and what it will publish when it commits.
pub struct Mutation {
    tx: Transaction<'static, Any>,
    dialect: Dialect,
    events: Vec<Event>,
    /// Per conversation: its last sequence as loaded, and the last one given out here.
    numbering: HashMap<String, (i64, i64)>,
    commands: Vec<String>,
    changes: Changes<Topic>,
    backlog: Arc<Backlog>,
}

/// What a committed [`Mutation`] published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Sequences given to its events, in order.
    pub sequences: Vec<i64>,
    /// Outbox commands it added, to dispatch now.
    pub commands: Vec<String>,
}

impl Mutation {
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// `FOR UPDATE OF <alias>` on PostgreSQL, where concurrent transactions must wait for
    /// the row; nothing on SQLite, where `BEGIN IMMEDIATE` already serialises writers.
    fn lock_clause(&self, alias: &str) -> String {
        match self.dialect {
            Dialect::Postgres => format!(" FOR UPDATE OF {alias}"),
            Dialect::Sqlite => String::new(),
        }
    }

    /// The recorded response of an already applied request.
    pub async fn replay<M: prost::Message + Default>(
        &mut self,
        key: RequestKey<'_>,
    ) -> Result<Option<M>> {
        let recorded = idempotency::lookup(self.conn(), &key).await?;
        replayed(recorded, &key)
    }

    /// Adds an event and returns its sequence within its conversation (the next after the
    /// conversation's last, as loaded in this transaction); its place in the service-wide
    /// log is given when the transaction commits.
    pub fn event(&mut self, mut event: Event) -> i64 {
        let (_, last) = self
            .numbering
            .entry(event.conversation_id.clone())
            .or_insert((event.base_sequence, event.base_sequence));
        *last += 1;
        event.conversation_sequence = *last;
        self.events.push(event);
        *last
    }

    /// Commits: records `response` under `key` (if given), numbers and writes the events,
    /// then commits and wakes the event streams.
    ///
    /// The event counter is taken last, just before the commit: its row stays locked until
    /// then, so on PostgreSQL a transaction that takes sequence N+1 waits until the one
    /// holding N has committed, and readers following `sequence > cursor` never see N+1
    /// before N. A lost race on the same `request_id` is [`Error::Conflict`].
    pub async fn commit<M: prost::Message>(
        mut self,
        key: Option<RequestKey<'_>>,
        response: &M,
    ) -> Result<Committed> {
        if let Some(key) = key {
            idempotency::record(&mut self.tx, &key, response)
                .await
                .map_err(|err| {
                    if switchboard_server_kit::db::is_unique_violation(&err) {
                        Error::Conflict(format!(
                            "request {} is being applied concurrently; retry it",
                            key.request_id
                        ))
                    } else {
                        Error::Storage(err)
                    }
                })?;
        }
        // Each conversation's counter moves only from the value this transaction loaded: the
        // conversation row is locked (PostgreSQL) or writers are serialised (SQLite), so a
        // mismatch means a change slipped past that rule; refuse it rather than number twice.
        for (conversation_id, (base, last)) in std::mem::take(&mut self.numbering) {
            let moved = sqlx::query(
                "UPDATE conversations SET last_event_sequence = $3 \
                 WHERE id = $1 AND last_event_sequence = $2",
            )
            .bind(&conversation_id)
            .bind(base)
            .bind(last)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
            if moved != 1 {
                return Err(Error::Conflict(format!(
                    "conversation {conversation_id} changed concurrently; retry"
                )));
            }
        }
        let events = std::mem::take(&mut self.events);
        let mut committed_topics: Vec<(String, String)> = events
            .iter()
            .map(|e| (e.tenant_id.clone(), e.conversation_id.clone()))
            .collect();
        committed_topics.dedup();
        let mut sequences = Vec::with_capacity(events.len());
        if !events.is_empty() {
            let count = events.len() as i64;
            let (last,): (i64,) = sqlx::query_as(
                "UPDATE event_counter SET last = last + $1 WHERE id = 1 RETURNING last",
            )
            .bind(count)
            .fetch_one(&mut *self.tx)
            .await?;
            for (i, mut event) in events.into_iter().enumerate() {
                event.sequence = last - count + 1 + i as i64;
                sequences.push(event.sequence);
                events::insert(&mut self.tx, &event).await?;
            }
        }
        self.tx.commit().await?;
        self.backlog.add(self.commands.len());
        self.changes.publish_committed(
            sequences.iter().copied(),
            committed_topics
                .iter()
                .flat_map(|(tenant_id, id)| topics(tenant_id, id)),
        );
        Ok(Committed {
            sequences,
            commands: self.commands,
        })
    }
}

/// `$from, $from+1, …` for `n` parameters.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value bound to a dynamically built statement.
#[derive(Clone, Debug)]
enum Bind {
    Text(String),
    Int(i64),
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(int) => query.bind(int),
        };
    }
    query
}

fn join_ids(ids: &[String]) -> String {
    ids.join(",")
}

fn split_ids(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Internal(format!("stored data cannot be read: {what}"))
}
