//! Helpers shared by the store conformance suite and the gRPC tests: database backends
//! and a builder for conversation event logs.
#![allow(dead_code)]

use std::collections::HashMap;

use chrono::DateTime;
use prost_types::Timestamp;
use reporting_svc::store::Store;
use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::internal::v1::LogEntry;
use switchboard_proto::conversation::v1::{
    AssignmentSource, CloseReason, ConversationEvent, EventType,
};
use switchboard_server_kit::testing::ScratchDatabases;
use tempfile::TempDir;

/// A store on a fresh database, and what keeps that database alive.
pub struct Backend {
    /// The store.
    pub store: Store,
    /// The URL it was opened with, to open it again.
    pub url: String,
    _dir: Option<TempDir>,
    /// Declared after `store`: the PostgreSQL database is dropped once its pool is.
    _databases: Option<ScratchDatabases>,
}

/// A store on a new SQLite file.
pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("reporting.db").display());
    Backend {
        store: Store::open(&url).await.unwrap(),
        url,
        _dir: Some(dir),
        _databases: None,
    }
}

/// A store on a new PostgreSQL database of the server at `SWITCHBOARD_TEST_POSTGRES_URL`,
/// dropped with the backend; `None` when the run may go without PostgreSQL
/// (`switchboard_server_kit::testing`).
pub async fn postgres(test: &str) -> Option<Backend> {
    let server = switchboard_server_kit::testing::postgres_url(test)?;
    let databases = ScratchDatabases::new(&server, &format!("t_{}", uuid::Uuid::new_v4().simple()));
    let url = databases.create().await.unwrap();
    Some(Backend {
        store: Store::open(&url).await.unwrap(),
        url,
        _dir: None,
        _databases: Some(databases),
    })
}

impl Backend {
    /// The URL of another, empty database of the same kind, dropped with this backend.
    pub async fn another_database(&self, name: &str) -> String {
        match (&self._dir, &self._databases) {
            (Some(dir), _) => format!(
                "sqlite://{}",
                dir.path().join(format!("{name}.db")).display()
            ),
            (None, Some(databases)) => databases.create_suffixed(name).await.unwrap(),
            (None, None) => unreachable!("a backend keeps its directory or its databases"),
        }
    }
}

/// Runs each named async test function (taking a [`Store`]) on SQLite and, when
/// configured, on PostgreSQL.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = $crate::common::sqlite().await;
                    super::$name(&backend).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = $crate::common::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&backend).await;
                }
            )*
        }
    };
}

/// Declares, for each named `async fn(&Backend)`, the tests `<name>::on_sqlite` and
/// `<name>::on_postgres`, so every backend's run is reported by name.
#[macro_export]
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$test(&$crate::common::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                if let Some(backend) = $crate::common::postgres(module_path!()).await {
                    super::$test(&backend).await;
                }
            }
        }
    )+};
}

/// Microseconds since the epoch of an RFC 3339 time.
pub fn micros(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_micros()
}

/// A protobuf timestamp of an RFC 3339 time.
pub fn ts(rfc3339: &str) -> Timestamp {
    let micros = micros(rfc3339);
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// A conversation whose events a [`EventLog`] writes.
#[derive(Clone, Debug)]
pub struct Conv {
    pub tenant_id: String,
    pub id: String,
    pub channel: Channel,
    pub queue_id: String,
    pub created: String,
}

/// Builds an event log the way conversation-svc writes one: entries with increasing log
/// sequences (with gaps, which readers must tolerate), each event numbered 1, 2, 3... within
/// its conversation and carrying the conversation's tenant, channel, queue and creation
/// time. Log sequences start at 1001 so that they never coincide with the per-conversation
/// sequences: a reader that confuses the two goes wrong.
#[derive(Default)]
pub struct EventLog {
    pub entries: Vec<LogEntry>,
    next_log_sequence: i64,
    conversation_sequences: HashMap<String, i64>,
    /// Programs of queues other than [`PROGRAM`].
    programs: HashMap<String, String>,
}

pub const PROGRAM: &str = "99999999-9999-4999-8999-999999999999";

impl EventLog {
    pub fn new() -> EventLog {
        EventLog {
            entries: Vec::new(),
            next_log_sequence: 1001,
            conversation_sequences: HashMap::new(),
            programs: HashMap::new(),
        }
    }

    /// Puts queue `queue_id` in program `program_id` (every queue is in [`PROGRAM`]
    /// otherwise), for the events written from now on.
    pub fn program(&mut self, queue_id: &str, program_id: &str) {
        self.programs
            .insert(queue_id.to_owned(), program_id.to_owned());
    }

    /// Leaves `n` log sequence numbers unused.
    pub fn gap(&mut self, n: i64) {
        self.next_log_sequence += n;
    }

    /// The log sequence of the last entry written.
    pub fn last_sequence(&self) -> i64 {
        self.entries.last().map_or(0, |e| e.log_sequence)
    }

    pub fn push(
        &mut self,
        conv: &Conv,
        kind: EventType,
        at: &str,
        edit: impl FnOnce(&mut ConversationEvent),
    ) -> i64 {
        let log_sequence = self.next_log_sequence;
        self.next_log_sequence += 1;
        let sequence = self
            .conversation_sequences
            .entry(conv.id.clone())
            .or_default();
        *sequence += 1;
        let mut event = ConversationEvent {
            sequence: *sequence,
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: conv.tenant_id.clone(),
            conversation_id: conv.id.clone(),
            event_type: kind as i32,
            occur_time: Some(ts(at)),
            queue_id: conv.queue_id.clone(),
            channel: conv.channel as i32,
            conversation_create_time: Some(ts(&conv.created)),
            program_id: self
                .programs
                .get(&conv.queue_id)
                .map_or(PROGRAM, String::as_str)
                .to_owned(),
            ..ConversationEvent::default()
        };
        edit(&mut event);
        self.entries.push(LogEntry {
            log_sequence,
            event: Some(event),
        });
        log_sequence
    }

    /// A new conversation: CREATED then QUEUED.
    pub fn create(
        &mut self,
        tenant_id: &str,
        id: &str,
        channel: Channel,
        queue_id: &str,
        at: &str,
    ) -> Conv {
        let conv = Conv {
            tenant_id: tenant_id.to_owned(),
            id: id.to_owned(),
            channel,
            queue_id: queue_id.to_owned(),
            created: at.to_owned(),
        };
        self.push(&conv, EventType::Created, at, |_| {});
        self.push(&conv, EventType::Queued, at, |_| {});
        conv
    }

    pub fn assign(&mut self, conv: &Conv, at: &str, agent: &str, previous: &str) -> i64 {
        let source = if previous.is_empty() {
            AssignmentSource::QueueOffer
        } else {
            AssignmentSource::Transfer
        };
        self.push(conv, EventType::Assigned, at, |e| {
            e.agent_id = agent.to_owned();
            e.previous_agent_id = previous.to_owned();
            e.assignment_source = source as i32;
        })
    }

    pub fn message(&mut self, conv: &Conv, at: &str) -> i64 {
        self.push(conv, EventType::MessageAdded, at, |e| {
            e.message_id = uuid::Uuid::new_v4().to_string();
        })
    }

    pub fn transfer_requested(&mut self, conv: &Conv, at: &str, owner: &str) -> i64 {
        self.push(conv, EventType::TransferRequested, at, |e| {
            e.agent_id = owner.to_owned();
            e.transfer_id = uuid::Uuid::new_v4().to_string();
        })
    }

    pub fn transfer_resolved(&mut self, conv: &Conv, at: &str, owner: &str) -> i64 {
        self.push(conv, EventType::TransferResolved, at, |e| {
            e.agent_id = owner.to_owned();
        })
    }

    pub fn close(&mut self, conv: &Conv, at: &str, owner: &str) -> i64 {
        self.push(conv, EventType::Closed, at, |e| {
            e.agent_id = owner.to_owned();
            e.close_reason = CloseReason::WrapUpSubmitted as i32;
        })
    }

    pub fn reopen(&mut self, conv: &Conv, at: &str) -> i64 {
        self.push(conv, EventType::Reopened, at, |_| {})
    }

    pub fn unassign(&mut self, conv: &Conv, at: &str) -> i64 {
        self.push(conv, EventType::Unassigned, at, |_| {})
    }
}
