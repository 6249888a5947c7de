//! The moving parts behind the API: the matcher that makes offers, the expiry that times
//! them out, the dispatcher that applies accepted assignments in conversation-svc, and the
//! streams.

pub mod dispatcher;
pub mod expiry;
pub mod matcher;
pub mod members;
pub mod streams;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Timings;
use crate::directory::Directory;
use crate::engine::dispatcher::Dispatcher;
use crate::store::Store;

/// What every service handler and background task shares.
#[derive(Clone)]
pub struct Context {
    /// The routing database.
    pub store: Store,
    /// Wakes the matcher: something may now be offered.
    pub matcher: Arc<Notify>,
    /// Wakes the offer expiry: an offer was made, its deadline may be the nearest.
    pub expiry: Arc<Notify>,
    /// Applies accepted assignments in conversation-svc.
    pub dispatcher: Arc<Dispatcher>,
    /// The gateway's directory, asked who a user is before it gets a routing profile.
    pub directory: Directory,
    /// Tuning knobs.
    pub(crate) timings: Timings,
    /// Cancelled when the server shuts down; ends streams and background tasks.
    pub shutdown: CancellationToken,
}

impl Context {
    /// How the server streams poll and beat.
    pub fn pace(&self) -> streams::Pace {
        streams::Pace {
            heartbeat: self.timings.heartbeat_interval,
            team_refresh: self.timings.team_refresh_interval,
        }
    }

    /// Asks the matcher for a pass soon.
    pub fn wake_matcher(&self) {
        self.matcher.notify_one();
    }

    /// Asks the offer expiry to look at the deadlines again.
    pub fn wake_expiry(&self) {
        self.expiry.notify_one();
    }
}
