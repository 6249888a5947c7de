//! Sends the command outbox to routing-svc: at once after each commit, then again with
//! exponential backoff until routing-svc accepts, so that no conversation stays unrouted
//! and no capacity stays held because routing-svc was briefly away.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use switchboard_proto::routing::internal::v1 as rpb;
use switchboard_server_kit::db::now_micros;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::routing::{Routing, is_permanent};
use crate::store::{Command, CommandKind, Store};

/// How many commands one round sends at most, concurrently.
const BATCH: i64 = 32;

/// Retry timing of the outbox.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Delay before the first retry; also how often due commands are looked for.
    pub initial: Duration,
    /// Longest delay between retries.
    pub max: Duration,
    /// How long one attempt keeps a command claimed, longer than a routing call may take.
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
        stop: CancellationToken,
    ) -> Dispatcher {
        let wake = Arc::new(Notify::new());
        let dispatcher = Dispatcher { wake: wake.clone() };
        tokio::spawn(async move {
            info!("command outbox dispatcher started");
            loop {
                if let Err(err) = dispatch_due(&store, &routing, policy).await {
                    warn!(error = %err, "command outbox round failed");
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

/// Sends every due command once, concurrently.
pub async fn dispatch_due(
    store: &Store,
    routing: &Routing,
    policy: RetryPolicy,
) -> crate::error::Result<()> {
    loop {
        let due = store.due_commands(now_micros(), BATCH).await?;
        let full = due.len() as i64 == BATCH;
        let results = futures::future::join_all(
            due.into_iter()
                .map(|command| dispatch_one(store, routing, policy, command)),
        )
        .await;
        for result in results {
            result?;
        }
        if !full {
            return Ok(());
        }
    }
}

async fn dispatch_one(
    store: &Store,
    routing: &Routing,
    policy: RetryPolicy,
    command: Command,
) -> crate::error::Result<()> {
    let now = now_micros();
    let lease_until = now + policy.lease.as_micros() as i64;
    if !store.claim_command(&command.id, now, lease_until).await? {
        return Ok(());
    }
    let attempts = command.attempts + 1;
    let result = match command.kind {
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
    };
    let now = now_micros();
    match result {
        Ok(()) => {
            debug!(
                command_id = %command.id,
                kind = command.kind.as_str(),
                conversation_id = %command.conversation_id,
                attempts,
                "routing-svc accepted command"
            );
            store.complete_command(&command.id, now).await
        }
        Err(status) if is_permanent(&status) => {
            error!(
                command_id = %command.id,
                kind = command.kind.as_str(),
                conversation_id = %command.conversation_id,
                code = ?status.code(),
                message = status.message(),
                "routing-svc refused command for good"
            );
            let error = format!("{:?}: {}", status.code(), status.message());
            store.fail_command(&command.id, &error, now).await
        }
        Err(status) => {
            let delay = policy.backoff(attempts);
            warn!(
                command_id = %command.id,
                kind = command.kind.as_str(),
                conversation_id = %command.conversation_id,
                attempts,
                retry_in_ms = delay.as_millis() as u64,
                code = ?status.code(),
                message = status.message(),
                "routing-svc call failed, will retry"
            );
            let error = format!("{:?}: {}", status.code(), status.message());
            store
                .retry_command(&command.id, &error, now + delay.as_micros() as i64)
                .await
        }
    }
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
