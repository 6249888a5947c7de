//! Sends the command outbox to routing-svc: at once when the service starts and after each
//! commit, then again with exponential backoff until routing-svc accepts, so that no
//! conversation stays unrouted and no capacity stays held because routing-svc was briefly
//! away.
//!
//! Each round claims a batch of due commands in one write transaction, sends them
//! concurrently and records their outcomes in one more; the store hands out at most one
//! command per conversation at a time, in the order they were written.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use prost::Message as _;
use switchboard_proto::routing::internal::v1 as rpb;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::metrics::{OutboxMetrics, OutboxSeries};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::routing::{Routing, is_permanent};
use crate::store::{Command, CommandKind, Store};

/// How many commands one round claims and sends at most, all at once: a round lasts about
/// one call, well within the lease.
const BATCH: i64 = 64;

/// Retry timing of the outbox.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Delay before the first retry; also how often due commands are looked for.
    pub initial: Duration,
    /// Longest delay between retries.
    pub max: Duration,
    /// How long one attempt keeps a command claimed: the call's deadline plus a margin, so
    /// that a claim left by a process that died is soon taken again.
    pub lease: Duration,
}

impl RetryPolicy {
    /// The delay before the next attempt, after `attempts` failed ones.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exponent = attempts.saturating_sub(1).clamp(0, 20) as u32;
        self.initial
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max)
    }
}

/// The outbox's Prometheus series (server-kit [`OutboxMetrics`]).
pub const SERIES: OutboxSeries = OutboxSeries {
    lag_name: "conversation_outbox_delivery_lag_seconds",
    lag_help: "Time from a call to routing-svc being committed (the request acknowledged) to routing-svc accepting it.",
    pending_name: "conversation_outbox_pending_commands",
    pending_help: "Calls to routing-svc committed and not yet accepted or refused for good.",
};

/// What one call of [`dispatch_due`] learnt of routing-svc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// No command was due.
    Idle,
    /// routing-svc answered at least one call (accepted, refused, or failed itself).
    Answered,
    /// No call got an answer: routing-svc is down, shutting down or not reachable.
    Unreachable,
}

/// Handle to the background dispatcher; wakes it after a commit.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    wake: Arc<Notify>,
}

impl Dispatcher {
    /// Starts the dispatcher; it stops when `stop` is cancelled.
    pub fn spawn(
        store: Store,
        routing: Routing,
        policy: RetryPolicy,
        metrics: OutboxMetrics,
        stop: CancellationToken,
    ) -> Dispatcher {
        let wake = Arc::new(Notify::new());
        let dispatcher = Dispatcher { wake: wake.clone() };
        tokio::spawn(async move {
            info!("command outbox dispatcher started");
            if let Err(err) = retry_now(&store).await {
                warn!(error = %err, "command outbox could not reset retry delays");
            }
            let mut away = Away::default();
            loop {
                match dispatch_due(&store, &routing, policy, &metrics).await {
                    Ok(reach) => away.saw(reach, policy),
                    Err(err) => warn!(error = %err, "command outbox round failed"),
                }
                if away.back(&routing).await {
                    // Commands waiting out a backoff chosen while routing-svc was away go now.
                    match retry_now(&store).await {
                        Ok(commands) => info!(commands, "routing-svc answers again"),
                        Err(err) => {
                            warn!(error = %err, "command outbox could not reset retry delays")
                        }
                    }
                    continue;
                }
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(policy.initial) => {}
                    () = stop.cancelled() => break,
                }
            }
            info!("command outbox dispatcher stopped");
        });
        dispatcher
    }

    /// Asks the dispatcher to send newly committed commands now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// While routing-svc does not answer, the dispatcher asks its health on every round, so that
/// commands go as soon as it is back rather than after their backoff (up to `max`). Should
/// it report SERVING and still not answer calls, the early retries space out like a backoff.
#[derive(Debug, Default)]
struct Away {
    /// Set while routing-svc has not answered since a round it did not answer: the least
    /// time between two early retries, and when the next may come.
    gap: Option<(Duration, tokio::time::Instant)>,
}

impl Away {
    fn saw(&mut self, reach: Reach, policy: RetryPolicy) {
        match reach {
            Reach::Answered => self.gap = None,
            Reach::Unreachable if self.gap.is_none() => {
                self.gap = Some((policy.initial, tokio::time::Instant::now()));
            }
            Reach::Unreachable | Reach::Idle => {}
        }
    }

    /// Whether routing-svc, away until now, reports SERVING and may be called again.
    async fn back(&mut self, routing: &Routing) -> bool {
        let Some((gap, not_before)) = self.gap else {
            return false;
        };
        if tokio::time::Instant::now() < not_before || !routing.serving().await {
            return false;
        }
        self.gap = Some((gap.saturating_mul(2), tokio::time::Instant::now() + gap));
        true
    }
}

/// Makes the commands that wait out a backoff due now (a starting process owes no delay
/// chosen before it started); leased ones stay with whoever holds them.
pub async fn retry_now(store: &Store) -> crate::error::Result<u64> {
    let mut m = store.begin().await?;
    let reset = m.retry_commands_now(now_micros()).await?;
    m.commit(None, &()).await?;
    Ok(reset)
}

/// Sends every due command once, a batch at a time, then recounts the backlog; says
/// whether routing-svc answered. A round that sent anything is followed by another at once:
/// a conversation's next command becomes due only when the one before it is accepted, and
/// must not wait for the next poll.
pub async fn dispatch_due(
    store: &Store,
    routing: &Routing,
    policy: RetryPolicy,
    metrics: &OutboxMetrics,
) -> crate::error::Result<Reach> {
    let mut reach = Reach::Idle;
    loop {
        let now = now_micros();
        if !store.any_command_due(now).await? {
            break;
        }
        let lease_until = now.saturating_add(micros(policy.lease));
        let mut m = store.begin().await?;
        let claimed = m.claim_commands(now, lease_until, BATCH).await?;
        m.commit(None, &()).await?;
        if claimed.is_empty() {
            // What is due is leased by another replica or waits behind a leased command.
            break;
        }
        let sent: Vec<(Command, Result<(), tonic::Status>)> = futures::stream::iter(claimed)
            .map(|command| async move {
                let result = send(routing, &command).await;
                (command, result)
            })
            .buffer_unordered(BATCH as usize)
            .collect()
            .await;
        let answered = sent.iter().any(|(_, result)| {
            !matches!(result, Err(status) if status.code() == tonic::Code::Unavailable)
        });
        reach = match (reach, answered) {
            (_, true) | (Reach::Answered, _) => Reach::Answered,
            _ => Reach::Unreachable,
        };
        record(store, policy, metrics, sent, lease_until).await?;
    }
    let pending = store.refresh_backlog().await?;
    metrics.set_pending(pending);
    Ok(reach)
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// One call to routing-svc for `command`.
async fn send(routing: &Routing, command: &Command) -> Result<(), tonic::Status> {
    match command.kind {
        CommandKind::Enqueue => match rpb::EnqueueConversationRequest::decode(&*command.payload) {
            Ok(request) => routing.enqueue(request).await,
            Err(err) => Err(tonic::Status::invalid_argument(format!(
                "undecodable payload: {err}"
            ))),
        },
        CommandKind::ReleaseCapacity => {
            match rpb::ReleaseCapacityRequest::decode(&*command.payload) {
                Ok(request) => match routing.release_capacity(request).await {
                    // Nothing held any more: the capacity is free, which is what was asked.
                    Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
                    other => other,
                },
                Err(err) => Err(tonic::Status::invalid_argument(format!(
                    "undecodable payload: {err}"
                ))),
            }
        }
        CommandKind::CancelWaiting => match rpb::CancelWaitingRequest::decode(&*command.payload) {
            Ok(request) => routing.cancel_waiting(request).await,
            Err(err) => Err(tonic::Status::invalid_argument(format!(
                "undecodable payload: {err}"
            ))),
        },
        CommandKind::WithdrawOffer => match rpb::WithdrawOfferRequest::decode(&*command.payload) {
            Ok(request) => routing.withdraw_offer(request).await,
            Err(err) => Err(tonic::Status::invalid_argument(format!(
                "undecodable payload: {err}"
            ))),
        },
    }
}

/// Records the outcomes of one round in one write transaction, then observes the lag of
/// the accepted commands.
async fn record(
    store: &Store,
    policy: RetryPolicy,
    metrics: &OutboxMetrics,
    sent: Vec<(Command, Result<(), tonic::Status>)>,
    lease_until: i64,
) -> crate::error::Result<()> {
    let now = now_micros();
    let mut accepted = Vec::new();
    let mut m = store.begin().await?;
    for (command, result) in &sent {
        match result {
            Ok(()) => {
                debug!(
                    command_id = %command.id,
                    kind = command.kind.as_str(),
                    conversation_id = %command.conversation_id,
                    attempts = command.attempts,
                    "routing-svc accepted command"
                );
                m.complete_command(&command.id, now).await?;
                accepted.push(command.create_time);
            }
            Err(status) if is_permanent(status) => {
                error!(
                    command_id = %command.id,
                    kind = command.kind.as_str(),
                    conversation_id = %command.conversation_id,
                    code = ?status.code(),
                    message = status.message(),
                    "routing-svc refused command for good"
                );
                let error = format!("{:?}: {}", status.code(), status.message());
                m.fail_command(&command.id, &error, now).await?;
            }
            Err(status) => {
                let delay = policy.backoff(command.attempts);
                warn!(
                    command_id = %command.id,
                    kind = command.kind.as_str(),
                    conversation_id = %command.conversation_id,
                    attempts = command.attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    code = ?status.code(),
                    message = status.message(),
                    "routing-svc call failed, will retry"
                );
                let error = format!("{:?}: {}", status.code(), status.message());
                m.retry_command(
                    &command.id,
                    &error,
                    now.saturating_add(micros(delay)),
                    lease_until,
                )
                .await?;
            }
        }
    }
    m.commit(None, &()).await?;
    for create_time in accepted {
        metrics.delivered(create_time, now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            lease: Duration::from_secs(30),
        };
        let delays: Vec<u128> = (1..=6).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff(10_000).as_millis(), 1000);
    }
}
