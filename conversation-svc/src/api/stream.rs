//! Waiting for new events in server streams.

use std::time::Duration;

use switchboard_proto::common::v1::Heartbeat;
use switchboard_server_kit::db::{micros_to_timestamp, now_micros};
use tokio::sync::watch;
use tokio::time::Instant;
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

    /// Waits for a reason to look again, or until `quiet_until` when nothing happens.
    pub(super) async fn wait_until(&mut self, quiet_until: Instant) -> Wake {
        tokio::select! {
            awake = self.wait() => if awake { Wake::Changed } else { Wake::Stopping },
            () = tokio::time::sleep_until(quiet_until) => Wake::Quiet,
        }
    }

    /// Whether the server is shutting down.
    pub(super) fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// Why [`Waiter::wait_until`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wake {
    /// Something may have been committed: look again.
    Changed,
    /// Nothing happened until the deadline: time for a heartbeat.
    Quiet,
    /// The server is shutting down: end the stream.
    Stopping,
}

/// A heartbeat stamped with the server's clock.
pub(super) fn heartbeat_now() -> Heartbeat {
    Heartbeat {
        server_time: Some(micros_to_timestamp(now_micros())),
    }
}
