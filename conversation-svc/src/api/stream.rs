//! Waiting for new events in server streams.

use switchboard_proto::common::v1::Heartbeat;
use switchboard_server_kit::changes::Watch;
use switchboard_server_kit::db::{micros_to_timestamp, now_micros};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::Topic;

/// Wakes a stream when a change of its topics is published (a commit of this process at
/// once, another replica's through the store's change follower) and tells it to end at
/// shutdown. Create it before the stream's first read, so nothing committed meanwhile is
/// missed.
pub(super) struct Waiter {
    watch: Watch<Topic>,
    stop: CancellationToken,
}

impl Waiter {
    pub(super) fn new(watch: Watch<Topic>, stop: CancellationToken) -> Waiter {
        Waiter { watch, stop }
    }

    /// Waits for a reason to look again; false when the stream must end.
    pub(super) async fn wait(&mut self) -> bool {
        tokio::select! {
            () = self.watch.changed() => !self.stop.is_cancelled(),
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
