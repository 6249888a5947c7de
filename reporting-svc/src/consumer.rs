//! The background tasks that follow conversation-svc's and routing-svc's event logs and
//! fold each event into the facts and counts.
//!
//! Each subscribes after its stored cursor, applies every log entry in a transaction
//! together with that cursor, and on any end or failure of the stream subscribes again
//! after a capped exponential backoff. Since the cursor is read from the database on
//! every subscription, a restart, a reconnection or a server that replays old events
//! never loses nor double-counts one. The two logs have a cursor each and are followed
//! independently: one service being down never holds the other's events back.
//!
//! The cursor is the entry's position in the service's whole log (`log_sequence` for
//! conversation-svc, the event's `sequence` for routing-svc). A conversation event's own
//! `sequence` counts within its conversation (1, 2, 3 in each), so it repeats across
//! conversations and must never be used as the cursor.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_client::ConversationInternalServiceClient;
use switchboard_proto::conversation::internal::v1::subscribe_response::Update as ConversationUpdate;
use switchboard_proto::conversation::internal::v1::{
    LogEntry, SubscribeRequest as ConversationSubscribe,
};
use switchboard_proto::conversation::v1::EventType;
use switchboard_proto::conversation::v1::segment::EndReason;
use switchboard_proto::routing::internal::v1::routing_internal_service_client::RoutingInternalServiceClient;
use switchboard_proto::routing::internal::v1::subscribe_response::Update as RoutingUpdate;
use switchboard_proto::routing::internal::v1::{
    PresenceCause as ProtoPresenceCause, RoutingEvent as ProtoRoutingEvent, RoutingEventType,
    SubscribeRequest as RoutingSubscribe,
};
use switchboard_proto::routing::v1::OfferKind;
use switchboard_server_kit::SignedChannel;
use switchboard_server_kit::db::timestamp_to_micros;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use crate::domain::activity::{Presence, PresenceCause};
use crate::domain::facts::{Event, EventKind};
use crate::domain::metrics::{OfferKind as DomainOfferKind, RoutingEvent, RoutingEventKind};
use crate::store::{CONVERSATION_EVENTS, Entry, FoldedRun, Following, ROUTING_EVENTS, Store};

/// Most log entries applied in one transaction. A live log's runs are what arrived since
/// the last one, a handful; only a catch-up fills them. There a run of 5,000 rather than
/// 1,000 reads the conversations it names and commits a fifth as often, and more of a
/// conversation's events fall in one run, so its facts row is written once: PostgreSQL's
/// catch-up went from 0.31-0.34x to 0.40x of a raw read of the log, SQLite's from
/// 0.61-0.63x to 0.68x (docs/benchmarks.md).
const APPLY_BATCH: usize = 5_000;

/// Stream updates received ahead of the applying: the next entries arrive, decoded,
/// while a transaction commits, so that catching up is bound by the slower of the two
/// rather than by their sum.
const READ_AHEAD: usize = 2 * APPLY_BATCH;

/// A folded run being written by a task of its own, while the next one folds on it.
struct Writing {
    run: Arc<FoldedRun>,
    task: AbortOnDropHandle<Result<Following, sqlx::Error>>,
}

/// Reads `stream` into a bounded channel from a task of its own, which ends when the
/// returned handle is dropped.
fn read_ahead(
    mut stream: BoxStream<'static, Result<Update, tonic::Status>>,
) -> (
    mpsc::Receiver<Result<Update, tonic::Status>>,
    AbortOnDropHandle<()>,
) {
    let (sender, receiver) = mpsc::channel(READ_AHEAD);
    let task = tokio::spawn(async move {
        while let Some(update) = stream.next().await {
            if sender.send(update).await.is_err() {
                break;
            }
        }
    });
    (receiver, AbortOnDropHandle::new(task))
}

/// Prometheus series of the consumers, labelled by `source` (`conversation-svc`,
/// `routing-svc`).
#[derive(Clone, Debug)]
pub struct ConsumerMetrics {
    applied: prometheus::IntCounterVec,
    cursor: prometheus::IntGaugeVec,
    caught_up: prometheus::IntGaugeVec,
}

impl ConsumerMetrics {
    /// Creates the series and registers them in `registry`.
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<ConsumerMetrics> {
        let applied = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "reporting_events_applied_total",
                "Events folded into the report facts and counts, by source log.",
            ),
            &["source"],
        )?;
        let cursor = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "reporting_event_cursor",
                "Log position of the last event applied, by source log.",
            ),
            &["source"],
        )?;
        let caught_up = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "reporting_event_consumer_caught_up",
                "1 once the source's current subscription has applied every event committed \
                 when it started, 0 while catching up or disconnected.",
            ),
            &["source"],
        )?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(cursor.clone()))?;
        registry.register(Box::new(caught_up.clone()))?;
        Ok(ConsumerMetrics {
            applied,
            cursor,
            caught_up,
        })
    }
}

/// Capped exponential backoff between subscriptions.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The delay to wait now; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Back to the initial delay, after a subscription that made progress.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("event stream failed: {0}")]
    Stream(#[from] tonic::Status),
    #[error("storing an event failed: {0}")]
    Storage(#[from] sqlx::Error),
}

/// An event of either log, as the store applies it.
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a consumer reads one log, so all its inputs are one variant: boxing would only add an allocation per event"
)]
enum Input {
    Conversation(Event),
    Routing(RoutingEvent),
}

/// One message of either log's subscription.
enum Update {
    /// The next entry: its log position, and its event or why it carries nothing to
    /// report on.
    Entry {
        log_sequence: i64,
        input: Result<Box<Input>, &'static str>,
    },
    /// The stream is alive.
    Heartbeat,
    /// Every event committed when the subscription started was sent.
    CaughtUp,
    /// A message with nothing set.
    Empty,
}

/// The log a consumer follows.
#[derive(Debug)]
enum Log {
    Conversation(ConversationInternalServiceClient<SignedChannel>),
    Routing(RoutingInternalServiceClient<SignedChannel>),
}

impl Log {
    /// The cursor name, also the `source` label of the metrics.
    fn name(&self) -> &'static str {
        match self {
            Log::Conversation(_) => CONVERSATION_EVENTS,
            Log::Routing(_) => ROUTING_EVENTS,
        }
    }

    async fn subscribe(
        &mut self,
        after_sequence: i64,
    ) -> Result<BoxStream<'static, Result<Update, tonic::Status>>, tonic::Status> {
        Ok(match self {
            Log::Conversation(client) => client
                .subscribe(ConversationSubscribe { after_sequence })
                .await?
                .into_inner()
                .map(|message| {
                    Ok(match message?.update {
                        Some(ConversationUpdate::Entry(entry)) => Update::Entry {
                            log_sequence: entry.log_sequence,
                            input: to_domain(&entry).map(|e| Box::new(Input::Conversation(e))),
                        },
                        Some(ConversationUpdate::Heartbeat(_)) => Update::Heartbeat,
                        Some(ConversationUpdate::CaughtUp(_)) => Update::CaughtUp,
                        None => Update::Empty,
                    })
                })
                .boxed(),
            Log::Routing(client) => client
                .subscribe(RoutingSubscribe { after_sequence })
                .await?
                .into_inner()
                .map(|message| {
                    Ok(match message?.update {
                        Some(RoutingUpdate::Event(event)) => Update::Entry {
                            log_sequence: event.sequence,
                            input: routing_to_domain(&event).map(|e| Box::new(Input::Routing(e))),
                        },
                        Some(RoutingUpdate::Heartbeat(_)) => Update::Heartbeat,
                        Some(RoutingUpdate::CaughtUp(_)) => Update::CaughtUp,
                        None => Update::Empty,
                    })
                })
                .boxed(),
        })
    }
}

/// The metric series of one consumer.
#[derive(Clone, Debug)]
struct SourceMetrics {
    applied: prometheus::IntCounter,
    cursor: prometheus::IntGauge,
    caught_up: prometheus::IntGauge,
}

/// Follows one service's event log into a [`Store`].
#[derive(Debug)]
pub struct Consumer {
    store: Store,
    log: Log,
    backoff: Backoff,
    metrics: Option<SourceMetrics>,
}

impl Consumer {
    /// A consumer of conversation-svc's log, subscribing over `channel` (signed as
    /// reporting-svc) and applying to `store`.
    pub fn conversation(
        store: Store,
        channel: SignedChannel,
        backoff: Backoff,
        metrics: Option<&ConsumerMetrics>,
    ) -> Consumer {
        Consumer::new(
            store,
            Log::Conversation(ConversationInternalServiceClient::new(channel)),
            backoff,
            metrics,
        )
    }

    /// A consumer of routing-svc's log, subscribing over `channel` (signed as
    /// reporting-svc) and applying to `store`.
    pub fn routing(
        store: Store,
        channel: SignedChannel,
        backoff: Backoff,
        metrics: Option<&ConsumerMetrics>,
    ) -> Consumer {
        Consumer::new(
            store,
            Log::Routing(RoutingInternalServiceClient::new(channel)),
            backoff,
            metrics,
        )
    }

    fn new(
        store: Store,
        log: Log,
        backoff: Backoff,
        metrics: Option<&ConsumerMetrics>,
    ) -> Consumer {
        let source = log.name();
        Consumer {
            store,
            log,
            backoff,
            metrics: metrics.map(|m| SourceMetrics {
                applied: m.applied.with_label_values(&[source]),
                cursor: m.cursor.with_label_values(&[source]),
                caught_up: m.caught_up.with_label_values(&[source]),
            }),
        }
    }

    /// Runs until `token` is cancelled.
    pub async fn run(mut self, token: CancellationToken) {
        let source = self.log.name();
        loop {
            let mut applied = 0_u64;
            let outcome = tokio::select! {
                () = token.cancelled() => break,
                outcome = self.follow(&mut applied) => outcome,
            };
            if applied > 0 {
                self.backoff.reset();
            }
            let delay = self.backoff.next_delay();
            match outcome {
                Ok(()) => warn!(
                    source,
                    applied,
                    retry_in = ?delay,
                    "event stream ended, subscribing again"
                ),
                Err(err) => warn!(
                    source,
                    applied,
                    retry_in = ?delay,
                    error = %err,
                    "event stream failed, subscribing again"
                ),
            }
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        info!(source, "event consumer stopped");
    }

    /// One subscription: from the stored cursor until the stream ends or fails.
    async fn follow(&mut self, applied: &mut u64) -> Result<(), StreamError> {
        self.set_caught_up(false);
        let source = self.log.name();
        let after_sequence = self.store.cursor(source).await?;
        let (mut stream, _reader) = read_ahead(self.log.subscribe(after_sequence).await?);
        info!(source, after_sequence, "subscribed to events");
        let mut position = after_sequence;
        let mut writing: Option<Writing> = None;
        // The gauge goes back to 0 however the stream ends.
        let outcome = async {
            let mut ended = false;
            while !ended {
                let Some(first) = stream.recv().await.transpose()? else {
                    break;
                };
                // Take what the stream already holds, without waiting, and apply it in one
                // transaction: the events of one change arrive together.
                let mut batch = Vec::new();
                let mut next = Some(first);
                while let Some(update) = next.take() {
                    match update {
                        Update::Entry {
                            log_sequence,
                            input,
                        } => batch.push((log_sequence, input)),
                        // Nothing to apply; on a quiet log it is also when a rebuild
                        // (see `Store::rebuild`) is noticed, within a heartbeat, once the
                        // run being written is settled (which logs why, if it was not).
                        Update::Heartbeat if batch.is_empty() => {
                            if !self.settle(&mut writing, applied).await? {
                                return Ok(());
                            }
                            if self.store.cursor(source).await? < position {
                                info!(
                                    source,
                                    "the reports were rebuilt: following the log from its start"
                                );
                                return Ok(());
                            }
                        }
                        Update::Heartbeat => {}
                        Update::CaughtUp => {
                            if !self
                                .apply_entries(&mut position, &batch, applied, &mut writing)
                                .await?
                                || !self.settle(&mut writing, applied).await?
                            {
                                return Ok(());
                            }
                            batch.clear();
                            info!(source, applied = *applied, "caught up with the event log");
                            self.set_caught_up(true);
                        }
                        Update::Empty => {
                            warn!(source, "subscribe message with nothing set, ignored")
                        }
                    }
                    if batch.len() >= APPLY_BATCH {
                        break;
                    }
                    next = match stream.try_recv() {
                        Ok(Ok(update)) => Some(update),
                        Err(TryRecvError::Disconnected) => {
                            ended = true;
                            None
                        }
                        Ok(Err(status)) => {
                            self.apply_entries(&mut position, &batch, applied, &mut writing)
                                .await?;
                            self.settle(&mut writing, applied).await?;
                            return Err(status.into());
                        }
                        Err(TryRecvError::Empty) => None,
                    };
                }
                if !self
                    .apply_entries(&mut position, &batch, applied, &mut writing)
                    .await?
                {
                    return Ok(());
                }
            }
            self.settle(&mut writing, applied).await?;
            Ok::<(), StreamError>(())
        }
        .await;
        self.set_caught_up(false);
        outcome
    }

    /// Folds log entries into one run and starts writing it in one transaction, once the
    /// run before it is written; an entry that carries nothing to report on moves the
    /// cursor past it, so that it does not block the entries after it. `position` is
    /// where the subscription stands (moved to the run's end); `writing`, the run being
    /// written, which this one folds on. Returns false, having applied nothing more, when
    /// the subscription must start again from the stored cursor (see [`Consumer::settle`]).
    async fn apply_entries(
        &self,
        position: &mut i64,
        entries: &[(i64, Result<Box<Input>, &'static str>)],
        applied: &mut u64,
        writing: &mut Option<Writing>,
    ) -> Result<bool, StreamError> {
        let Some((last, _)) = entries.last() else {
            return Ok(true);
        };
        let source = self.log.name();
        let batch: Vec<(i64, Option<Entry<'_>>)> = entries
            .iter()
            .map(|(log_sequence, input)| {
                let entry = match input.as_deref() {
                    Ok(Input::Conversation(event)) => Some(Entry::Conversation(event)),
                    Ok(Input::Routing(event)) => Some(Entry::Routing(event)),
                    Err(reason) => {
                        warn!(
                            source,
                            log_sequence, reason, "event carries nothing to report on, skipped"
                        );
                        None
                    }
                };
                (*log_sequence, entry)
            })
            .collect();
        let previous = writing.as_ref().map(|w| Arc::clone(&w.run));
        let run = self
            .store
            .fold_ahead(*position, &batch, previous.as_deref())
            .await?;
        if !self.settle(writing, applied).await? {
            return Ok(false);
        }
        let run = Arc::new(run);
        let store = self.store.clone();
        let task = tokio::spawn({
            let run = Arc::clone(&run);
            async move { store.write_folded(source, &run).await }
        });
        *writing = Some(Writing {
            run,
            task: AbortOnDropHandle::new(task),
        });
        *position = (*position).max(*last);
        Ok(true)
    }

    /// Waits until the run being written, if any, is written. Returns false when it was
    /// not, because the stored cursor is no longer where it was folded after (the reports
    /// were rebuilt, or another consumer applied entries): the subscription must start
    /// again from the stored cursor.
    async fn settle(
        &self,
        writing: &mut Option<Writing>,
        applied: &mut u64,
    ) -> Result<bool, StreamError> {
        let Some(Writing { run, task }) = writing.take() else {
            return Ok(true);
        };
        let source = self.log.name();
        let written = task
            .await
            .map_err(|err| sqlx::Error::Io(std::io::Error::other(err)))??;
        match written {
            Following::Applied(new) => {
                if new > 0 {
                    *applied += new;
                    if let Some(metrics) = &self.metrics {
                        metrics.applied.inc_by(new);
                        metrics.cursor.set(run.last());
                    }
                }
                Ok(true)
            }
            Following::Rebuilt => {
                info!(
                    source,
                    "the reports were rebuilt: following the log from its start"
                );
                Ok(false)
            }
            Following::Moved => {
                warn!(
                    source,
                    "another consumer applied entries of this log: following it from the stored cursor"
                );
                Ok(false)
            }
        }
    }

    fn set_caught_up(&self, caught_up: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.caught_up.set(i64::from(caught_up));
        }
    }
}

/// The routing event as the counts need it, positioned by its sequence in routing-svc's
/// log; an error names what is missing. Events with no tenant (none today) are refused.
pub fn routing_to_domain(event: &ProtoRoutingEvent) -> Result<RoutingEvent, &'static str> {
    if event.tenant_id.is_empty() {
        return Err("no tenant_id");
    }
    let occurred_at = event
        .occur_time
        .as_ref()
        .map(timestamp_to_micros)
        .ok_or("no occur_time")?;
    let kind = match RoutingEventType::try_from(event.event_type) {
        Ok(RoutingEventType::OfferCreated) => RoutingEventKind::OfferCreated,
        Ok(RoutingEventType::OfferAccepted) => RoutingEventKind::OfferAccepted,
        Ok(RoutingEventType::OfferRejected) => RoutingEventKind::OfferRejected,
        Ok(RoutingEventType::OfferTimedOut) => RoutingEventKind::OfferTimedOut,
        Ok(RoutingEventType::OfferWithdrawn) => RoutingEventKind::OfferWithdrawn,
        Ok(RoutingEventType::WaitingOverflowed) => RoutingEventKind::WaitingOverflowed,
        Ok(RoutingEventType::PresenceChanged) => RoutingEventKind::PresenceChanged,
        Ok(RoutingEventType::CapacityReserved) => RoutingEventKind::CapacityReserved,
        Ok(RoutingEventType::CapacityReleased) => RoutingEventKind::CapacityReleased,
        Ok(RoutingEventType::AgentProfileSet) => RoutingEventKind::AgentProfileSet,
        Ok(_) | Err(_) => RoutingEventKind::Other,
    };
    Ok(RoutingEvent {
        log_sequence: event.sequence,
        tenant_id: event.tenant_id.clone(),
        kind,
        occurred_at,
        agent_id: event.agent_id.clone(),
        conversation_id: event.conversation_id.clone(),
        queue_id: event.queue_id.clone(),
        from_queue_id: event.from_queue_id.clone(),
        channel: event.channel,
        wait_started_at: event.wait_start_time.as_ref().map(timestamp_to_micros),
        offer_kind: match OfferKind::try_from(event.offer_kind) {
            Ok(OfferKind::Queue) => DomainOfferKind::Queue,
            Ok(OfferKind::Transfer) => DomainOfferKind::Transfer,
            Ok(OfferKind::Conference) => DomainOfferKind::Conference,
            Ok(OfferKind::Consult) => DomainOfferKind::Consult,
            Ok(OfferKind::Unspecified) | Err(_) => DomainOfferKind::None,
        },
        offer_id: event.offer_id.clone(),
        offer_created_at: event.offer_create_time.as_ref().map(timestamp_to_micros),
        presence: Presence::from_proto(event.presence),
        presence_cause: match ProtoPresenceCause::try_from(event.presence_cause) {
            Ok(ProtoPresenceCause::Agent) => PresenceCause::Agent,
            Ok(ProtoPresenceCause::Supervisor) => PresenceCause::Supervisor,
            Ok(ProtoPresenceCause::OfferTimedOut) => PresenceCause::OfferTimedOut,
            Ok(ProtoPresenceCause::Capacity) => PresenceCause::Capacity,
            Ok(ProtoPresenceCause::Unspecified) | Err(_) => PresenceCause::Unknown,
        },
        capacity_used: event.capacity_used,
        capacity_total: event.capacity_total,
        units_over_capacity: event.units_over_capacity,
    })
}

/// The log entry's event as the facts need it, positioned by the entry's log sequence; an
/// error names what is missing.
pub fn to_domain(entry: &LogEntry) -> Result<Event, &'static str> {
    let event = entry.event.as_ref().ok_or("no event")?;
    if event.tenant_id.is_empty() {
        return Err("no tenant_id");
    }
    if event.conversation_id.is_empty() {
        return Err("no conversation_id");
    }
    let occurred_at = event
        .occur_time
        .as_ref()
        .map(timestamp_to_micros)
        .ok_or("no occur_time")?;
    let kind = match EventType::try_from(event.event_type) {
        Ok(EventType::Created) => EventKind::Created,
        Ok(EventType::Assigned) => EventKind::Assigned,
        Ok(EventType::Unassigned) => EventKind::Unassigned,
        Ok(EventType::TransferRequested) => EventKind::TransferRequested,
        Ok(EventType::TransferResolved) => EventKind::TransferResolved,
        Ok(EventType::ParticipantInvited) => EventKind::ParticipantInvited,
        Ok(EventType::InvitationEnded) => EventKind::InvitationEnded,
        Ok(EventType::ParticipantJoined) => EventKind::ParticipantJoined,
        Ok(EventType::WrapUpSubmitted) => EventKind::WrapUpSubmitted,
        Ok(EventType::Closed) => EventKind::Closed,
        Ok(EventType::Reopened) => EventKind::Reopened,
        Ok(EventType::StatusChanged) => EventKind::StatusChanged,
        Ok(_) | Err(_) => EventKind::Other,
    };
    Ok(Event {
        log_sequence: entry.log_sequence,
        tenant_id: event.tenant_id.clone(),
        conversation_id: event.conversation_id.clone(),
        kind,
        occurred_at,
        agent_id: event.agent_id.clone(),
        previous_agent_id: event.previous_agent_id.clone(),
        queue_id: event.queue_id.clone(),
        previous_queue_id: event.previous_queue_id.clone(),
        program_id: event.program_id.clone(),
        channel: event.channel,
        conversation_created_at: event
            .conversation_create_time
            .as_ref()
            .map(timestamp_to_micros),
        actor_id: event.actor_id.clone(),
        transfer_id: event.transfer_id.clone(),
        transfer_to_agent_id: event.transfer_to_agent_id.clone(),
        transfer_to_queue_id: event.transfer_to_queue_id.clone(),
        offer_id: event.offer_id.clone(),
        ping_pong: event.ping_pong,
        answer_outcome: event.answer_outcome,
        transfer_fallback: event.transfer_fallback,
        invitation_id: event.invitation_id.clone(),
        participant_user_id: event.participant_user_id.clone(),
        participant_role: event.participant_role,
        wrap_up_reason_ids: event.wrap_up_reason_ids.clone(),
        status_label_id: event.status_label_id.clone(),
        sender_reasons: kind == EventKind::WrapUpSubmitted
            && (!event.transfer_id.is_empty()
                || event.segment_end_reason == EndReason::Transferred as i32),
    })
}

#[cfg(test)]
mod tests {
    use switchboard_proto::conversation::v1::{AssignmentSource, ConversationEvent};

    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn events_convert_or_say_what_is_missing() {
        let event = ConversationEvent {
            sequence: 2,
            tenant_id: "t".to_owned(),
            conversation_id: "c".to_owned(),
            event_type: EventType::Assigned as i32,
            occur_time: Some(prost_types::Timestamp {
                seconds: 10,
                nanos: 5_000,
            }),
            agent_id: "b".to_owned(),
            previous_agent_id: "a".to_owned(),
            channel: 2,
            assignment_source: AssignmentSource::Transfer as i32,
            ..ConversationEvent::default()
        };
        let entry = |event: ConversationEvent| LogEntry {
            log_sequence: 7_001,
            event: Some(event),
        };
        let domain = to_domain(&entry(event.clone())).unwrap();
        assert_eq!(domain.kind, EventKind::Assigned);
        assert_eq!(
            domain.log_sequence, 7_001,
            "positioned in the log, not in its conversation"
        );
        assert_eq!(domain.occurred_at, 10_000_005);
        assert_eq!(domain.conversation_created_at, None);
        assert_eq!(
            to_domain(&entry(ConversationEvent {
                event_type: EventType::MessageAdded as i32,
                ..event.clone()
            }))
            .unwrap()
            .kind,
            EventKind::Other
        );
        assert_eq!(
            to_domain(&entry(ConversationEvent {
                occur_time: None,
                ..event.clone()
            })),
            Err("no occur_time")
        );
        assert_eq!(
            to_domain(&entry(ConversationEvent {
                tenant_id: String::new(),
                ..event
            })),
            Err("no tenant_id")
        );
        assert_eq!(
            to_domain(&LogEntry {
                log_sequence: 3,
                event: None
            }),
            Err("no event")
        );
    }
}
