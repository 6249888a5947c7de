//! Applies accepted assignments in conversation-svc from the outbox.
//!
//! The accept transaction writes the outbox entry; the first attempt runs right after the
//! commit and later ones in the background with exponential backoff, until
//! conversation-svc confirms (done) or refuses for good because the conversation was
//! closed or taken meanwhile (the capacity is then released and the entry done). A crash
//! at any point leaves the entry to be retried: no capacity leaks and no conversation
//! stays stuck.

use std::time::Duration;

use switchboard_proto::conversation::internal::v1::ApplyAssignmentRequest;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_client::ConversationInternalServiceClient;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::identity::SignedChannel;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::{info, warn};

use crate::config::Timings;
use crate::domain::AssignmentSource;
use crate::error::Result;
use crate::store::outbox::{self, OutboxEntry};
use crate::store::{Store, routing};
use switchboard_proto::conversation::v1::AssignmentSource as ContractSource;

/// What became of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// conversation-svc applied the assignment.
    Applied,
    /// conversation-svc refused for good; the capacity was released.
    Refused(String),
    /// conversation-svc could not be reached or failed; retried later.
    RetryLater(String),
}

/// Calls conversation-svc's ApplyAssignment for outbox entries.
pub struct Dispatcher {
    store: Store,
    client: ConversationInternalServiceClient<SignedChannel>,
    timings: Timings,
    /// Wakes the matcher after capacity was released.
    matcher: std::sync::Arc<Notify>,
}

/// The contract's name for how the agent got the conversation.
fn assignment_source(source: AssignmentSource) -> ContractSource {
    match source {
        AssignmentSource::QueueOffer => ContractSource::QueueOffer,
        AssignmentSource::Claim => ContractSource::Claim,
    }
}

/// Microseconds of a duration, saturating.
fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl Dispatcher {
    pub(crate) fn new(
        store: Store,
        channel: SignedChannel,
        timings: Timings,
        matcher: std::sync::Arc<Notify>,
    ) -> Dispatcher {
        Dispatcher {
            store,
            client: ConversationInternalServiceClient::new(channel),
            timings,
            matcher,
        }
    }

    /// How long an entry stays reserved for one attempt before another dispatcher may
    /// take it: the call's deadline plus a margin.
    pub fn lease(&self) -> Duration {
        self.timings.conversation_timeout + Duration::from_secs(1)
    }

    /// Delay before attempt number `attempts + 1`.
    fn backoff(&self, attempts: i32) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(20);
        self.timings
            .retry_initial
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.timings.retry_max)
    }

    /// Makes one attempt for `entry` (already leased) and records its outcome.
    pub async fn attempt(&self, entry: &OutboxEntry) -> Result<Attempt> {
        let mut request = tonic::Request::new(ApplyAssignmentRequest {
            tenant_id: entry.tenant_id.clone(),
            conversation_id: entry.conversation_id.clone(),
            agent_id: entry.agent_id.clone(),
            agent_display_name: entry.agent_display_name.clone(),
            offer_id: entry.offer_id.clone(),
            queue_id: entry.queue_id.clone(),
            assignment_source: assignment_source(entry.source) as i32,
        });
        request.set_timeout(self.timings.conversation_timeout);
        let mut client = self.client.clone();
        let result = tokio::time::timeout(
            self.timings.conversation_timeout,
            client.apply_assignment(request),
        )
        .await;
        let now = now_micros();
        match result {
            Ok(Ok(_)) => {
                let mut tx = self.store.begin().await?;
                outbox::complete(&mut tx, entry, "applied", now).await?;
                tx.commit().await?;
                info!(
                    conversation_id = %entry.conversation_id,
                    agent_id = %entry.agent_id,
                    offer_id = %entry.offer_id,
                    "assignment applied"
                );
                Ok(Attempt::Applied)
            }
            Ok(Err(status))
                if matches!(status.code(), Code::FailedPrecondition | Code::NotFound) =>
            {
                let outcome = format!("refused: {}", status.message());
                let mut tx = self.store.begin().await?;
                if outbox::complete(&mut tx, entry, &outcome, now).await? {
                    routing::release_capacity(
                        &mut tx,
                        &entry.tenant_id,
                        &entry.conversation_id,
                        &entry.agent_id,
                        now,
                    )
                    .await?;
                }
                tx.commit().await?;
                self.matcher.notify_one();
                warn!(
                    conversation_id = %entry.conversation_id,
                    agent_id = %entry.agent_id,
                    offer_id = %entry.offer_id,
                    code = ?status.code(),
                    message = status.message(),
                    "conversation-svc refused the assignment, capacity released"
                );
                Ok(Attempt::Refused(outcome))
            }
            other => {
                let outcome = match other {
                    Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
                    _ => "timed out".to_owned(),
                };
                let attempts = entry.attempts.saturating_add(1);
                let delay = self.backoff(attempts);
                let mut conn = self.store.conn().await?;
                outbox::retry_later(
                    &mut conn,
                    &entry.id,
                    attempts,
                    now.saturating_add(micros(delay)),
                    &outcome,
                )
                .await?;
                warn!(
                    conversation_id = %entry.conversation_id,
                    offer_id = %entry.offer_id,
                    attempts,
                    retry_in = ?delay,
                    outcome = %outcome,
                    "assignment not applied yet, will retry"
                );
                Ok(Attempt::RetryLater(outcome))
            }
        }
    }

    /// Retries due entries until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.timings.matcher_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(err) = self.retry_due(&shutdown).await {
                warn!(error = %err, "outbox pass failed");
            }
        }
    }

    async fn retry_due(&self, shutdown: &CancellationToken) -> Result<()> {
        let now = now_micros();
        let due = {
            let mut conn = self.store.conn().await?;
            outbox::due(&mut conn, now, 50).await?
        };
        for entry in due {
            if shutdown.is_cancelled() {
                break;
            }
            let lease_until = now_micros().saturating_add(micros(self.lease()));
            let taken = {
                let mut conn = self.store.conn().await?;
                outbox::lease(&mut conn, &entry, lease_until).await?
            };
            if taken {
                self.attempt(&entry).await?;
            }
        }
        Ok(())
    }
}
