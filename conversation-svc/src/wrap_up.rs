//! The background task that enforces wrap-up time limits: it closes conversations left in
//! WRAP_UP past their deadline (`api::close_due_wrap_ups`), then sleeps until the nearest
//! deadline. EndConversation wakes it when it sets a deadline; the bounded `poll` finds
//! deadlines set by other replicas. Replicas may sweep at once: each close is a conditional
//! update, so a conversation closes once.

use std::sync::Arc;
use std::time::Duration;

use switchboard_server_kit::db::now_micros;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::close_due_wrap_ups;
use crate::outbox::Dispatcher;
use crate::store::Store;

/// Longest sleep between two sweeps: how late a deadline set by another replica may be
/// enforced.
pub const POLL: Duration = Duration::from_secs(5);

/// Handle to the background task; wakes it when a deadline is set.
#[derive(Clone, Debug)]
pub struct Sweeper {
    wake: Arc<Notify>,
}

impl Sweeper {
    /// Starts the task; it stops when `stop` is cancelled. Closes wake `outbox`, which
    /// sends their capacity releases.
    pub fn spawn(
        store: Store,
        outbox: Dispatcher,
        poll: Duration,
        stop: CancellationToken,
    ) -> Sweeper {
        let wake = Arc::new(Notify::new());
        let sweeper = Sweeper { wake: wake.clone() };
        tokio::spawn(async move {
            info!("wrap-up time limit sweeper started");
            loop {
                let pause = sweep(&store, &outbox, poll).await;
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                    () = stop.cancelled() => break,
                }
            }
            info!("wrap-up time limit sweeper stopped");
        });
        sweeper
    }

    /// Asks the task to look at the deadlines again (one was just set).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Closes what is due and returns how long to sleep: until the nearest deadline, at most
/// `poll`, and `poll` after a failure.
async fn sweep(store: &Store, outbox: &Dispatcher, poll: Duration) -> Duration {
    match close_due_wrap_ups(store, now_micros()).await {
        Ok(swept) => {
            if swept.closed > 0 {
                outbox.wake();
            }
            if swept.failed > 0 {
                return poll;
            }
        }
        Err(err) => {
            warn!(error = %err, "wrap-up time limit sweep failed");
            return poll;
        }
    }
    match store.next_wrap_up_deadline().await {
        Ok(Some(deadline)) => until(deadline, now_micros()).min(poll),
        Ok(None) => poll,
        Err(err) => {
            warn!(error = %err, "reading the next wrap-up deadline failed");
            poll
        }
    }
}

/// The time from `now` to `deadline` (microseconds), zero when it has passed.
fn until(deadline: i64, now: i64) -> Duration {
    Duration::from_micros(u64::try_from(deadline.saturating_sub(now)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_the_deadline_and_not_past_it() {
        assert_eq!(until(3_500_000, 1_000_000), Duration::from_millis(2_500));
        assert_eq!(until(1_000_000, 3_500_000), Duration::ZERO);
    }
}
