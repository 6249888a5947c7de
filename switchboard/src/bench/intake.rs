//! `intake`: how fast reporting-svc catches up on conversation-svc's event log after being
//! away, against a raw read of the same events from the same stream in the same run.
//!
//! conversation-svc serves in this process with a log of `intake_events` events written
//! straight into its store (the `reports` scenario's busy tenant: created, queued,
//! assigned, three in ten transferred, wrapped up, closed). Then, alternating:
//! - the baseline: a client subscribes to the log from its start, as reporting-svc does,
//!   and receives every entry until the stream says it has caught up, keeping nothing;
//! - the subject: a reporting-svc on a fresh store starts in this process and follows the
//!   log from its start; the run ends when its stored cursor reaches the log's end.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use sqlx::AssertSqlSafe;
use switchboard_proto::conversation::internal::v1::SubscribeRequest;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_client::ConversationInternalServiceClient;
use switchboard_proto::conversation::internal::v1::subscribe_response::Update;
use switchboard_proto::conversation::v1::EventType;
use switchboard_server_kit::server::ShutdownSignal;
use switchboard_server_kit::{Db, Dialect, Identity, IdentityKey, signed_channel};

use reporting_svc::domain::facts::{Event, EventKind};
use reporting_svc::store::CONVERSATION_EVENTS;

use super::Plan;
use super::report::{Better, Figure, ScenarioResult};
use super::reports::{self, Dice, HISTORY_END, MICROS_PER_DAY};
use super::scenarios::{self, Store};

/// Rows per INSERT while writing the log (22 values each).
const ROWS_PER_STATEMENT: usize = 400;
/// Rows per transaction while writing the log.
const ROWS_PER_TRANSACTION: usize = 20_000;
/// Agents of the tenant.
const AGENTS: u64 = 500;

/// The contract's number for a reporting event kind.
fn event_type(kind: EventKind) -> EventType {
    match kind {
        EventKind::Created => EventType::Created,
        EventKind::Assigned => EventType::Assigned,
        EventKind::Unassigned => EventType::Unassigned,
        EventKind::TransferRequested => EventType::TransferRequested,
        EventKind::TransferResolved => EventType::TransferResolved,
        EventKind::ParticipantInvited => EventType::ParticipantInvited,
        EventKind::InvitationEnded => EventType::InvitationEnded,
        EventKind::ParticipantJoined => EventType::ParticipantJoined,
        EventKind::WrapUpSubmitted => EventType::WrapUpSubmitted,
        EventKind::Closed => EventType::Closed,
        EventKind::Reopened => EventType::Reopened,
        EventKind::StatusChanged => EventType::StatusChanged,
        EventKind::Other => EventType::Queued,
    }
}

/// Writes about `events` events into conversation-svc's log (the `events` table its
/// Subscribe reads), numbered from 1; returns the last log sequence.
async fn write_log(db: &Db, events: u64) -> anyhow::Result<i64> {
    let days = 60;
    let mut dice = Dice(7);
    // About six conversation-log events per conversation.
    let total = (events / 6).max(1);
    let start = HISTORY_END - days * MICROS_PER_DAY;
    let step = (days * MICROS_PER_DAY) / total as i64;
    let mut sequence = 0_i64;
    // A conversation's events are generated together: its own sequence counts from 1
    // while the id stays the same.
    let (mut conversation, mut in_conversation) = (String::new(), 0_i64);
    let mut n = 0;
    let mut routing = Vec::new();
    while n < total {
        let mut log: Vec<Event> = Vec::new();
        while log.len() < ROWS_PER_TRANSACTION && n < total {
            let at = start + n as i64 * step + dice.below(step.max(1) as u64) as i64;
            reports::conversation(&mut dice, n, at, AGENTS, &mut log, &mut routing);
            routing.clear();
            n += 1;
        }
        let mut tx = db.begin().await?;
        for rows in log.chunks(ROWS_PER_STATEMENT) {
            let mut text = String::from(
                "INSERT INTO events (sequence, id, tenant_id, conversation_id, type, \
                 occur_time, actor_id, agent_id, previous_agent_id, queue_id, program_id, \
                 channel, segment_id, state, wrap_up_reason_ids, message_id, transfer_id, \
                 detail, conversation_create_time, conversation_sequence, \
                 transfer_to_agent_id, answer_outcome) VALUES ",
            );
            for index in 0..rows.len() {
                text.push_str(if index == 0 { "(" } else { ", (" });
                // Numbered on PostgreSQL; anonymous on SQLite, where binding a numbered
                // one costs a search through all of the statement's.
                let marks: Vec<String> = (1..=22)
                    .map(|k| match db.dialect {
                        Dialect::Postgres => format!("${}", index * 22 + k),
                        Dialect::Sqlite => "?".to_owned(),
                    })
                    .collect();
                text.push_str(&marks.join(", "));
                text.push(')');
            }
            let mut query = sqlx::query(AssertSqlSafe(text));
            for event in rows {
                sequence += 1;
                if event.conversation_id != conversation {
                    conversation.clone_from(&event.conversation_id);
                    in_conversation = 0;
                }
                in_conversation += 1;
                query = query
                    .bind(sequence)
                    .bind(uuid::Uuid::new_v4().to_string())
                    .bind(event.tenant_id.clone())
                    .bind(event.conversation_id.clone())
                    .bind(event_type(event.kind) as i64)
                    .bind(event.occurred_at)
                    .bind(event.actor_id.clone())
                    .bind(event.agent_id.clone())
                    .bind(event.previous_agent_id.clone())
                    .bind(event.queue_id.clone())
                    .bind(event.program_id.clone())
                    .bind(i64::from(event.channel))
                    .bind(String::new())
                    .bind(1_i64)
                    .bind(event.wrap_up_reason_ids.join(","))
                    .bind(String::new())
                    .bind(event.transfer_id.clone())
                    .bind(String::new())
                    .bind(event.conversation_created_at.unwrap_or(event.occurred_at))
                    .bind(in_conversation)
                    .bind(event.transfer_to_agent_id.clone())
                    .bind(i64::from(event.answer_outcome));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    sqlx::query("UPDATE event_counter SET last = $1 WHERE id = 1")
        .bind(sequence)
        .execute(db.writer())
        .await?;
    Ok(sequence)
}

/// Reads the whole log from its start as reporting-svc would, keeping nothing: how long
/// until the stream says it caught up, and how many entries came.
async fn raw_read(
    client: &mut ConversationInternalServiceClient<switchboard_server_kit::SignedChannel>,
) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut stream = client
        .subscribe(SubscribeRequest { after_sequence: 0 })
        .await?
        .into_inner();
    let mut entries = 0;
    while let Some(message) = stream.next().await {
        match message?.update {
            Some(Update::Entry(_)) => entries += 1,
            Some(Update::CaughtUp(_)) => return Ok((started.elapsed(), entries)),
            _ => {}
        }
    }
    anyhow::bail!("the stream ended before catching up, after {entries} entries")
}

/// Starts a reporting-svc on a fresh store, following the log at `conversation_url`, and
/// waits until its cursor reaches `last`: how long that took from its start.
async fn catch_up(
    url: &str,
    secret: &str,
    conversation_url: &str,
    last: i64,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let config = reporting_svc::Config {
        listen: addr,
        metrics_listen: None,
        database_url: url.to_owned(),
        identity_secret: secret.to_owned(),
        conversation_url: conversation_url.to_owned(),
        // No routing log: its consumer retries in the background, harmlessly.
        routing_url: "http://127.0.0.1:9".to_owned(),
        ..Default::default()
    };
    let shutdown = ShutdownSignal::new();
    let started = Instant::now();
    let server = tokio::spawn(reporting_svc::serve(config, listener, shutdown.clone()));
    let outcome = async {
        // Serving means its schema is in place: the store can be opened beside it.
        while !crate::suite::serving(addr).await {
            anyhow::ensure!(
                !server.is_finished(),
                "reporting-svc stopped while starting"
            );
            anyhow::ensure!(started.elapsed() < limit, "reporting-svc did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let store = reporting_svc::store::Store::open(url).await?;
        loop {
            if store.cursor(CONVERSATION_EVENTS).await? >= last {
                break;
            }
            anyhow::ensure!(
                !server.is_finished(),
                "reporting-svc stopped while catching up"
            );
            anyhow::ensure!(
                started.elapsed() < limit,
                "reporting-svc did not catch up within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        store.db().clone().close().await;
        anyhow::Ok(took)
    }
    .await;
    shutdown.trigger();
    let _ = server.await;
    outcome
}

pub(super) async fn intake(
    plan: &Plan,
    dir: &std::path::Path,
    store: Store<'_>,
) -> anyhow::Result<ScenarioResult> {
    let events = plan.intake_events;
    let mut result = scenarios::scenario(
        "intake",
        store.name(),
        "reporting-svc catching up on conversation-svc's log from its start (fresh store each round, both services in process), against a client reading the same log from the same stream and keeping nothing, alternating",
    );
    let database = |what: String| async move {
        anyhow::Ok(match store {
            Store::Sqlite => format!("sqlite://{}/{what}.db", dir.display()),
            Store::Postgres(databases) => scenarios::create_database(databases, &what).await?,
        })
    };
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let conversation_db = database("conversation".to_owned()).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let nowhere = "http://127.0.0.1:9".to_owned();
    let config = conversation_svc::Config {
        listen: addr,
        metrics_listen: None,
        database_url: conversation_db.clone(),
        identity_secret: secret.clone(),
        routing_url: nowhere.clone(),
        directory_url: nowhere,
        ..Default::default()
    };
    let shutdown = ShutdownSignal::new();
    let server = tokio::spawn(conversation_svc::serve(config, listener, shutdown.clone()));
    let outcome = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !crate::suite::serving(addr).await {
            anyhow::ensure!(Instant::now() < deadline, "conversation-svc did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let db = Db::connect(&conversation_db).await?;
        let written = Instant::now();
        let last = write_log(&db, events).await?;
        let write_s = written.elapsed().as_secs_f64();
        db.close().await;

        let conversation_url = format!("http://{addr}");
        let key = IdentityKey::new(&secret)?;
        let mut client = ConversationInternalServiceClient::new(signed_channel(
            &conversation_url,
            key,
            Identity::service("reporting-svc"),
        )?);
        let (mut reads, mut catch_ups) = (Vec::new(), Vec::new());
        for round in 0..plan.intake_rounds {
            let (took, entries) = raw_read(&mut client).await?;
            anyhow::ensure!(
                entries == last as u64,
                "the raw read got {entries} entries of {last}"
            );
            reads.push(took);
            // A raw read's pace bounds how long a catch-up may sensibly take.
            let limit = took * 50 + Duration::from_secs(60);
            let url = database(format!("reporting_{round}")).await?;
            catch_ups.push(catch_up(&url, &secret, &conversation_url, last, limit).await?);
        }
        anyhow::Ok((last, write_s, reads, catch_ups))
    }
    .await;
    shutdown.trigger();
    let _ = server.await;
    let (last, write_s, reads, catch_ups) = outcome?;

    let rate = |d: &Duration| last as f64 / d.as_secs_f64();
    let read_rates: Vec<f64> = reads.iter().map(rate).collect();
    let intake_rates: Vec<f64> = catch_ups.iter().map(rate).collect();
    result.runs.push(serde_json::json!({
        "label": "log written, then raw reads and catch-ups alternating",
        "events": last,
        "write_s": write_s,
        "raw_read_per_s": read_rates,
        "catch_up_per_s": intake_rates,
    }));
    result.figures.push(
        Figure::new(
            format!("events applied per second, catching up on {last} events"),
            "/s",
            median(intake_rates),
            "a raw read of the same events from the stream",
            median(read_rates),
            Better::Higher,
        )
        .goal(">= 0.5x"),
    );
    Ok(result)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
