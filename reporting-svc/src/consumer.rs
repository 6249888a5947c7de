//! The background task that follows conversation-svc's event log and folds each event
//! into the facts.
//!
//! It subscribes after the stored cursor, applies every log entry in its own transaction
//! together with the cursor, and on any end or failure of the stream subscribes again
//! after a capped exponential backoff. Since the cursor is read from the database on
//! every subscription, a restart, a reconnection or a server that replays old events
//! never loses nor double-counts one.
//!
//! The cursor is the entry's `log_sequence`, the position in conversation-svc's whole log.
//! An event's own `sequence` counts within its conversation (1, 2, 3 in each), so it
//! repeats across conversations and must never be used as the cursor.

use std::time::Duration;

use futures::FutureExt as _;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_client::ConversationInternalServiceClient;
use switchboard_proto::conversation::internal::v1::subscribe_response::Update;
use switchboard_proto::conversation::internal::v1::{LogEntry, SubscribeRequest};
use switchboard_proto::conversation::v1::EventType;
use switchboard_server_kit::SignedChannel;
use switchboard_server_kit::db::timestamp_to_micros;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::domain::facts::{Event, EventKind};
use crate::store::{CONVERSATION_EVENTS, Store};

/// Most log entries applied in one transaction.
const APPLY_BATCH: usize = 256;

/// Prometheus series of the consumer.
#[derive(Clone, Debug)]
pub struct ConsumerMetrics {
    applied: prometheus::IntCounter,
    cursor: prometheus::IntGauge,
    caught_up: prometheus::IntGauge,
}

impl ConsumerMetrics {
    /// Creates the series and registers them in `registry`.
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<ConsumerMetrics> {
        let applied = prometheus::IntCounter::new(
            "reporting_events_applied_total",
            "Conversation events folded into the report facts.",
        )?;
        let cursor = prometheus::IntGauge::new(
            "reporting_event_cursor",
            "Log sequence of the last conversation event applied.",
        )?;
        let caught_up = prometheus::IntGauge::new(
            "reporting_event_consumer_caught_up",
            "1 once the current subscription has applied every event committed when it \
             started, 0 while catching up or disconnected.",
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

/// Follows conversation-svc's event log into a [`Store`].
#[derive(Debug)]
pub struct Consumer {
    store: Store,
    client: ConversationInternalServiceClient<SignedChannel>,
    backoff: Backoff,
    metrics: Option<ConsumerMetrics>,
}

impl Consumer {
    /// A consumer subscribing over `channel` (signed as reporting-svc) and applying to
    /// `store`.
    pub fn new(
        store: Store,
        channel: SignedChannel,
        backoff: Backoff,
        metrics: Option<ConsumerMetrics>,
    ) -> Consumer {
        Consumer {
            store,
            client: ConversationInternalServiceClient::new(channel),
            backoff,
            metrics,
        }
    }

    /// Runs until `token` is cancelled.
    pub async fn run(mut self, token: CancellationToken) {
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
                    applied,
                    retry_in = ?delay,
                    "conversation event stream ended, subscribing again"
                ),
                Err(err) => warn!(
                    applied,
                    retry_in = ?delay,
                    error = %err,
                    "conversation event stream failed, subscribing again"
                ),
            }
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        info!("conversation event consumer stopped");
    }

    /// One subscription: from the stored cursor until the stream ends or fails.
    async fn follow(&mut self, applied: &mut u64) -> Result<(), StreamError> {
        self.set_caught_up(false);
        let after_sequence = self.store.cursor(CONVERSATION_EVENTS).await?;
        let mut stream = self
            .client
            .subscribe(SubscribeRequest { after_sequence })
            .await?
            .into_inner();
        info!(after_sequence, "subscribed to conversation events");
        // The gauge goes back to 0 however the stream ends.
        let outcome = async {
            let mut ended = false;
            while !ended {
                let Some(first) = stream.message().await? else {
                    break;
                };
                // Take what the stream already holds, without waiting, and apply it in one
                // transaction: the events of one change arrive together.
                let mut batch = Vec::new();
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    match message.update {
                        Some(Update::Entry(entry)) => batch.push(entry),
                        // Only says the stream is alive: nothing to apply.
                        Some(Update::Heartbeat(_)) => {}
                        Some(Update::CaughtUp(_)) => {
                            self.apply_entries(&batch, applied).await?;
                            batch.clear();
                            info!(
                                applied = *applied,
                                "caught up with the conversation event log"
                            );
                            self.set_caught_up(true);
                        }
                        None => warn!("subscribe message with nothing set, ignored"),
                    }
                    if batch.len() >= APPLY_BATCH {
                        break;
                    }
                    next = match stream.message().now_or_never() {
                        Some(Ok(Some(message))) => Some(message),
                        Some(Ok(None)) => {
                            ended = true;
                            None
                        }
                        Some(Err(status)) => {
                            self.apply_entries(&batch, applied).await?;
                            return Err(status.into());
                        }
                        None => None,
                    };
                }
                self.apply_entries(&batch, applied).await?;
            }
            Ok::<(), StreamError>(())
        }
        .await;
        self.set_caught_up(false);
        outcome
    }

    /// Applies log entries in one transaction; an entry that carries nothing to report
    /// on moves the cursor past it, so that it does not block the entries after it.
    async fn apply_entries(
        &self,
        entries: &[LogEntry],
        applied: &mut u64,
    ) -> Result<(), StreamError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            match to_domain(entry) {
                Ok(domain) => events.push((entry.log_sequence, Some(domain))),
                Err(reason) => {
                    warn!(
                        log_sequence = entry.log_sequence,
                        event_id = entry.event.as_ref().map_or("", |e| e.id.as_str()),
                        reason,
                        "conversation event carries nothing to report on, skipped"
                    );
                    events.push((entry.log_sequence, None));
                }
            }
        }
        let batch: Vec<(i64, Option<&Event>)> = events
            .iter()
            .map(|(sequence, event)| (*sequence, event.as_ref()))
            .collect();
        let new = self.store.apply_batch(CONVERSATION_EVENTS, &batch).await?;
        if new > 0 {
            *applied += new;
            if let Some(metrics) = &self.metrics {
                metrics.applied.inc_by(new);
                metrics.cursor.set(last.log_sequence);
            }
        }
        Ok(())
    }

    fn set_caught_up(&self, caught_up: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.caught_up.set(i64::from(caught_up));
        }
    }
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
        Ok(EventType::Closed) => EventKind::Closed,
        Ok(EventType::Reopened) => EventKind::Reopened,
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
        program_id: event.program_id.clone(),
        channel: event.channel,
        conversation_created_at: event
            .conversation_create_time
            .as_ref()
            .map(timestamp_to_micros),
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
