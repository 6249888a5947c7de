//! Waiting for new events in server streams.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Wakes a stream when this process commits events, every `poll` for events other
/// replicas commit, and tells it to end at shutdown.
pub(super) struct Waiter {
    commits: watch::Receiver<i64>,
    poll: Duration,
    stop: CancellationToken,
}

impl Waiter {
    pub(super) fn new(
        commits: watch::Receiver<i64>,
        poll: Duration,
        stop: CancellationToken,
    ) -> Waiter {
        Waiter {
            commits,
            poll,
            stop,
        }
    }

    /// Waits for a reason to look again; false when the stream must end.
    pub(super) async fn wait(&mut self) -> bool {
        tokio::select! {
            changed = self.commits.changed() => {
                if changed.is_err() {
                    // No more local commits to wait for: fall back to polling.
                    tokio::select! {
                        () = tokio::time::sleep(self.poll) => {}
                        () = self.stop.cancelled() => return false,
                    }
                }
                !self.stop.is_cancelled()
            }
            () = tokio::time::sleep(self.poll) => !self.stop.is_cancelled(),
            () = self.stop.cancelled() => false,
        }
    }

    /// Whether the server is shutting down.
    pub(super) fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}
