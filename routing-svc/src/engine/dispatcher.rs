//! Applies accepted assignments in conversation-svc from the outbox.
//!
//! The accept transaction writes the outbox entry, leased to the accepting process for
//! its first attempt, made right after the commit. Later attempts run in the background:
//! at once when the process starts (a retry delay chosen by a process that is gone means
//! nothing now), when woken, and on every tick, each round claiming a batch of due entries
//! in one write transaction, calling conversation-svc concurrently and recording the
//! outcomes in one more. Entries are retried with exponential backoff until
//! conversation-svc confirms (done) or refuses for good because the conversation was
//! closed or taken meanwhile (the capacity is then released and the entry done). Leases
//! last the call's deadline plus a margin, so an entry held by a process that crashed is
//! soon taken again: no capacity leaks and no conversation stays stuck. Entries of one
//! conversation are applied in the order they were written. The same loop delivers the
//! other entries: how a directed offer ended (ResolveOffer), conversations to return to
//! their queue because their agent logged out (ReleaseOnLogout), and conversations that
//! overflowed into another queue (ApplyOverflow).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_client::ConversationInternalServiceClient;
use switchboard_proto::conversation::internal::v1::{
    ApplyAssignmentRequest, ApplyOverflowRequest, ReleaseOnLogoutRequest, ResolveOfferRequest,
};
use switchboard_server_kit::db::{micros_to_timestamp, now_micros};
use switchboard_server_kit::identity::SignedChannel;
use switchboard_server_kit::metrics::{OutboxMetrics, OutboxSeries};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::{info, warn};

use crate::config::{Config, Timings};
use crate::convert;
use crate::domain::{AssignmentSource, OfferKind};
use crate::error::Result;
use crate::store::outbox::{self, OutboxEntry};
use crate::store::{Store, Tx, catalog, routing};
use switchboard_proto::conversation::v1::AssignmentSource as ContractSource;

/// How many entries one round claims and sends at most, all at once: a round lasts about
/// one call, well within the lease.
const BATCH: i64 = 64;

/// What a lease adds to the call's deadline: the writes around the call.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// What became of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// conversation-svc applied the assignment.
    Applied,
    /// conversation-svc refused for good; the capacity was released.
    Refused(String),
    /// conversation-svc could not be reached or failed, or an earlier assignment of the
    /// conversation is still pending; retried later.
    RetryLater(String),
}

/// The outbox's Prometheus series (server-kit [`OutboxMetrics`]).
pub const SERIES: OutboxSeries = OutboxSeries {
    lag_name: "routing_outbox_delivery_lag_seconds",
    lag_help: "Time from an offer being accepted (the request acknowledged) to conversation-svc applying the assignment.",
    pending_name: "routing_outbox_pending_assignments",
    pending_help: "Accepted assignments that conversation-svc has not yet applied or refused.",
};

/// Calls conversation-svc's ApplyAssignment for outbox entries.
pub struct Dispatcher {
    store: Store,
    client: ConversationInternalServiceClient<SignedChannel>,
    timings: Timings,
    /// Wakes the matcher after capacity was released.
    matcher: Arc<Notify>,
    /// Wakes the background loop.
    wake: Notify,
    metrics: OutboxMetrics,
}

/// The contract's name for how the agent got the conversation.
fn assignment_source(source: AssignmentSource) -> ContractSource {
    match source {
        AssignmentSource::QueueOffer => ContractSource::QueueOffer,
        AssignmentSource::Claim => ContractSource::Claim,
        AssignmentSource::Transfer => ContractSource::Transfer,
        // An invitation gives no ownership; offer_kind says which it was.
        AssignmentSource::Consult | AssignmentSource::Conference => ContractSource::Unspecified,
    }
}

/// Microseconds of a duration, saturating.
fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// How conversation-svc answered one call; `None` when it did not in time.
type CallResult = Option<std::result::Result<(), tonic::Status>>;

/// Whether conversation-svc refused to hear of an outcome: it will never take it, so the
/// entry is done (and an assignment's units are released).
fn refuses(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::FailedPrecondition | Code::NotFound)
}

/// Whether a call ended in a refusal (see [`refuses`]).
fn is_refusal(result: &CallResult) -> bool {
    matches!(result, Some(Err(status)) if refuses(status))
}

/// What recording an outcome leaves to do after the commit.
struct Recorded {
    attempt: Attempt,
    /// When the applied entry was written, for the lag.
    applied_since: Option<i64>,
    /// Whether capacity was released, for the matcher.
    released: bool,
}

impl Dispatcher {
    /// A dispatcher over `store` calling conversation-svc on `channel`, with the timings
    /// of `config`; `matcher` is woken when capacity is released.
    pub fn new(
        store: Store,
        channel: SignedChannel,
        config: &Config,
        matcher: Arc<Notify>,
        metrics: OutboxMetrics,
    ) -> Dispatcher {
        Dispatcher {
            store,
            client: ConversationInternalServiceClient::new(channel),
            timings: Timings::from_config(config),
            matcher,
            wake: Notify::new(),
            metrics,
        }
    }

    /// How long an entry stays reserved for one attempt before another dispatcher may
    /// take it: the call's deadline plus a margin.
    pub fn lease(&self) -> Duration {
        self.timings.conversation_timeout + LEASE_MARGIN
    }

    /// Asks the background loop for a round now.
    pub fn wake(&self) {
        self.wake.notify_one();
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

    /// Makes the first attempt for `entry`, just accepted (its `next_attempt_time` is the
    /// lease the accept took), and records its outcome. An entry that must wait for an
    /// earlier one of its conversation is left to the background loop.
    pub async fn attempt(&self, entry: &OutboxEntry) -> Result<Attempt> {
        let lease_until = entry.next_attempt_time;
        let first = {
            let mut conn = self.store.conn().await?;
            outbox::is_first_pending(&mut conn, entry).await?
        };
        if !first {
            let outcome = "waiting for an earlier assignment of the conversation".to_owned();
            let mut tx = self.store.begin().await?;
            outbox::retry_later(
                &mut tx,
                &entry.id,
                entry.attempts,
                now_micros(),
                &outcome,
                lease_until,
            )
            .await?;
            tx.commit().await?;
            self.wake();
            return Ok(Attempt::RetryLater(outcome));
        }
        let result = self.call(entry).await;
        let now = now_micros();
        let mut tx = self.store.begin().await?;
        let recorded = self
            .record(&mut tx, entry, lease_until, result, now)
            .await?;
        tx.commit().await?;
        self.after_commit(std::slice::from_ref(&recorded), now);
        Ok(recorded.attempt)
    }

    /// Calls ApplyAssignment for `entry` (or ResolveOffer for an offer that ended without
    /// an accept, ReleaseOnLogout, ApplyOverflow), within the deadline.
    async fn call(&self, entry: &OutboxEntry) -> CallResult {
        if let Some(overflow) = &entry.overflow {
            let request = ApplyOverflowRequest {
                tenant_id: entry.tenant_id.clone(),
                conversation_id: entry.conversation_id.clone(),
                request_id: entry.id.clone(),
                from_queue_id: overflow.from_queue_id.clone(),
                to_queue_id: entry.queue_id.clone(),
                to_program_id: overflow.program_id.clone(),
                enqueue_key: entry.enqueue_key.clone(),
            };
            return self
                .send(request, |mut client, request| async move {
                    client.apply_overflow(request).await
                })
                .await;
        }
        if let Some(logout) = &entry.logout {
            let request = ReleaseOnLogoutRequest {
                tenant_id: entry.tenant_id.clone(),
                conversation_id: entry.conversation_id.clone(),
                agent_id: entry.agent_id.clone(),
                request_id: entry.id.clone(),
                logout_by: logout.by.clone(),
                logout_time: Some(micros_to_timestamp(logout.time)),
            };
            return self
                .send(request, |mut client, request| async move {
                    client.release_on_logout(request).await
                })
                .await;
        }
        if let Some((state, reason)) = &entry.resolution {
            let request = ResolveOfferRequest {
                tenant_id: entry.tenant_id.clone(),
                conversation_id: entry.conversation_id.clone(),
                offer_id: entry.offer_id.clone(),
                state: state.as_i32(),
                reject_reason: reason.clone(),
            };
            return self
                .send(request, |mut client, request| async move {
                    client.resolve_offer(request).await
                })
                .await;
        }
        let wrap_up_time_limit = match self.wrap_up_time_limit(entry).await {
            Ok(limit) => limit,
            Err(err) => {
                return Some(Err(tonic::Status::unavailable(format!(
                    "reading queue {}: {err}",
                    entry.queue_id
                ))));
            }
        };
        let request = ApplyAssignmentRequest {
            tenant_id: entry.tenant_id.clone(),
            conversation_id: entry.conversation_id.clone(),
            agent_id: entry.agent_id.clone(),
            agent_display_name: entry.agent_display_name.clone(),
            offer_id: entry.offer_id.clone(),
            queue_id: entry.queue_id.clone(),
            assignment_source: assignment_source(entry.source) as i32,
            wrap_up_time_limit,
            offer_kind: entry.source.invitation().map_or(0, OfferKind::as_i32),
            enqueue_key: entry.enqueue_key.clone(),
        };
        self.send(request, |mut client, request| async move {
            client.apply_assignment(request).await
        })
        .await
    }

    /// Sends `message` to conversation-svc with `rpc` under the call's deadline, enforced
    /// here as well as told to the server.
    async fn send<M, R, F>(
        &self,
        message: M,
        rpc: impl FnOnce(ConversationInternalServiceClient<SignedChannel>, tonic::Request<M>) -> F,
    ) -> CallResult
    where
        F: std::future::Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timings.conversation_timeout);
        tokio::time::timeout(
            self.timings.conversation_timeout,
            rpc(self.client.clone(), request),
        )
        .await
        .ok()
        .map(|answer| answer.map(|_| ()))
    }

    /// The wrap-up time limit of the queue `entry` was offered from, which conversation-svc
    /// keeps with the conversation; `None` when the queue has none (or is gone).
    async fn wrap_up_time_limit(
        &self,
        entry: &OutboxEntry,
    ) -> Result<Option<prost_types::Duration>> {
        if entry.queue_id.is_empty() {
            return Ok(None);
        }
        let mut conn = self.store.conn().await?;
        let queue = catalog::get_queue(&mut conn, &entry.tenant_id, &entry.queue_id).await?;
        Ok(queue.as_ref().and_then(convert::wrap_up_time_limit))
    }

    /// Records the outcome of one attempt in `tx`.
    async fn record(
        &self,
        tx: &mut Tx,
        entry: &OutboxEntry,
        lease_until: i64,
        result: CallResult,
        now: i64,
    ) -> Result<Recorded> {
        match result {
            Some(Ok(())) => {
                let applied_since = outbox::finish(tx, entry, "applied", now).await?;
                info!(
                    conversation_id = %entry.conversation_id,
                    agent_id = %entry.agent_id,
                    offer_id = %entry.offer_id,
                    kind = entry.kind(),
                    "outbox entry applied"
                );
                Ok(Recorded {
                    attempt: Attempt::Applied,
                    applied_since,
                    released: false,
                })
            }
            Some(Err(status)) if refuses(&status) => {
                let outcome = format!("refused: {}", status.message());
                // An outcome conversation-svc refuses to hear of holds no capacity.
                let released =
                    outbox::complete(tx, entry, &outcome, now).await? && entry.is_assignment();
                if released {
                    routing::release_capacity(
                        tx,
                        &entry.tenant_id,
                        &entry.conversation_id,
                        &entry.agent_id,
                        now,
                    )
                    .await?;
                }
                warn!(
                    conversation_id = %entry.conversation_id,
                    agent_id = %entry.agent_id,
                    offer_id = %entry.offer_id,
                    code = ?status.code(),
                    message = status.message(),
                    kind = entry.kind(),
                    released,
                    "conversation-svc refused the outbox entry"
                );
                Ok(Recorded {
                    attempt: Attempt::Refused(outcome),
                    applied_since: None,
                    released,
                })
            }
            other => {
                let outcome = match other {
                    Some(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
                    _ => "timed out".to_owned(),
                };
                let attempts = entry.attempts.saturating_add(1);
                let delay = self.backoff(attempts);
                outbox::retry_later(
                    tx,
                    &entry.id,
                    attempts,
                    now.saturating_add(micros(delay)),
                    &outcome,
                    lease_until,
                )
                .await?;
                warn!(
                    conversation_id = %entry.conversation_id,
                    offer_id = %entry.offer_id,
                    attempts,
                    retry_in = ?delay,
                    outcome = %outcome,
                    kind = entry.kind(),
                    "outbox entry not applied yet, will retry"
                );
                Ok(Recorded {
                    attempt: Attempt::RetryLater(outcome),
                    applied_since: None,
                    released: false,
                })
            }
        }
    }

    /// Observes the lag of applied entries and wakes the matcher for released capacity.
    fn after_commit(&self, recorded: &[Recorded], now: i64) {
        for since in recorded.iter().filter_map(|r| r.applied_since) {
            self.metrics.delivered(since, now);
        }
        if recorded.iter().any(|r| r.released) {
            self.matcher.notify_one();
        }
    }

    /// The first round of a process: entries waiting out a backoff are made due at `now`,
    /// then every due entry is attempted. Entries leased by another process stay with it
    /// until the lease ends.
    pub async fn start(&self, now: i64) -> Result<Vec<Attempt>> {
        let mut tx = self.store.begin().await?;
        outbox::retry_now(&mut tx, now).await?;
        tx.commit().await?;
        self.dispatch_due(now).await
    }

    /// Attempts every entry due at `now` (a clock the caller chooses), a batch at a time,
    /// including those that become due as the entries before them settle, and returns the
    /// outcomes; then recounts the pending entries.
    pub async fn dispatch_due(&self, now: i64) -> Result<Vec<Attempt>> {
        let mut attempts = Vec::new();
        loop {
            let due = {
                let mut conn = self.store.conn().await?;
                outbox::any_due(&mut conn, now).await?
            };
            if !due {
                break;
            }
            let lease_until = now.saturating_add(micros(self.lease()));
            let mut tx = self.store.begin().await?;
            let claimed = outbox::claim(&mut tx, now, lease_until, BATCH).await?;
            tx.commit().await?;
            if claimed.is_empty() {
                // What is due is leased by another replica or waits behind a leased entry.
                break;
            }
            let mut results: Vec<(OutboxEntry, CallResult)> = futures::stream::iter(claimed)
                .map(|claimed| async move {
                    let result = self.call(&claimed.entry).await;
                    (claimed.entry, result)
                })
                .buffer_unordered(BATCH as usize)
                .collect()
                .await;
            // A clock ahead of the wall clock is the caller's; otherwise the outcome is
            // stamped when it is known.
            let at = now.max(now_micros());
            let mut tx = self.store.begin().await?;
            // A refused assignment releases its agent's units: those agents are locked
            // first, in one order (see `catalog::lock_agent`), and the entries recorded in
            // id order, rather than in the order the calls ended.
            results.sort_by(|a, b| a.0.id.cmp(&b.0.id));
            let mut releasing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (entry, result) in &results {
                if entry.is_assignment() && is_refusal(result) {
                    releasing
                        .entry(entry.tenant_id.as_str())
                        .or_default()
                        .push(entry.agent_id.as_str());
                }
            }
            for (tenant_id, agent_ids) in releasing {
                catalog::lock_agents(&mut tx, tenant_id, agent_ids).await?;
            }
            let mut recorded = Vec::with_capacity(results.len());
            for (entry, result) in results {
                recorded.push(
                    self.record(&mut tx, &entry, lease_until, result, at)
                        .await?,
                );
            }
            tx.commit().await?;
            self.after_commit(&recorded, at);
            attempts.extend(recorded.into_iter().map(|r| r.attempt));
            // Another round at once: a conversation's next entry became due only now that
            // the one before it is settled, and must not wait for the next tick.
        }
        let pending = {
            let mut conn = self.store.conn().await?;
            outbox::pending(&mut conn).await?
        };
        self.metrics.set_pending(pending);
        Ok(attempts)
    }

    /// Attempts due entries at once, then whenever woken and on every tick, until
    /// `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        if let Err(err) = self.start(now_micros()).await {
            warn!(error = %err, "first outbox pass failed");
        }
        let mut tick = tokio::time::interval(self.timings.matcher_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                _ = tick.tick() => {}
            }
            if let Err(err) = self.dispatch_due(now_micros()).await {
                warn!(error = %err, "outbox pass failed");
            }
        }
    }
}
