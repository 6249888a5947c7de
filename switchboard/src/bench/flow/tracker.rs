//! What the agents saw: each created conversation, when it was offered and closed.

use super::*;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::oneshot;

/// The conversations a scenario created and what became of them, shared by the side that
/// creates (which knows each create's intended start) and the agents (which see the offer
/// and close the conversation); either side may come first.
#[derive(Default)]
pub(super) struct Tracker {
    pub(super) state: Mutex<TrackerState>,
    /// Whether agents chat (two messages each way) before ending; off for latency runs.
    pub(super) chat: AtomicBool,
    /// Offers being answered right now.
    pub(super) busy: AtomicI64,
}

#[derive(Default)]
pub(super) struct TrackerState {
    pub(super) conversations: HashMap<String, Progress>,
    /// Created → offered of each measurement run in progress.
    pub(super) runs: HashMap<u32, OfferRun>,
    /// Agents' calls that failed since the last `take_errors`.
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
}

#[derive(Default)]
pub(super) struct Progress {
    /// The measurement run that created it, and the create's intended start.
    pub(super) created: Option<(u32, Instant)>,
    /// When an agent saw its first offer.
    pub(super) offered: Option<Instant>,
    pub(super) closed: bool,
    /// Told when the conversation is closed with wrap-up.
    pub(super) waiter: Option<oneshot::Sender<()>>,
}

/// Created → offered of one run.
pub(super) struct OfferRun {
    pub(super) latency: Histogram<u64>,
    /// Offered within [`OFFER_DEADLINE`].
    pub(super) seen: u64,
    /// Offered, but later than that.
    pub(super) late: u64,
    /// Never offered by the end of the run (counted in `latency` with the time they had
    /// waited by then, a lower bound).
    pub(super) missing: u64,
}

impl OfferRun {
    pub(super) fn record(&mut self, latency: Duration) {
        self.latency.saturating_record(micros(latency));
        if latency <= OFFER_DEADLINE {
            self.seen += 1;
        } else {
            self.late += 1;
        }
    }
}

impl Tracker {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.state.lock().expect("tracker lock")
    }

    pub(super) fn begin_run(&self, run: u32) {
        self.lock().runs.insert(
            run,
            OfferRun {
                latency: histogram(),
                seen: 0,
                late: 0,
                missing: 0,
            },
        );
    }

    /// The create of `id`, meant to start at `intended`, was acknowledged.
    pub(super) fn created(&self, id: String, run: u32, intended: Instant) {
        let mut state = self.lock();
        let TrackerState {
            conversations,
            runs,
            ..
        } = &mut *state;
        let progress = conversations.entry(id.clone()).or_default();
        progress.created = Some((run, intended));
        if let (Some(at), Some(offers)) = (progress.offered, runs.get_mut(&run)) {
            offers.record(at.saturating_duration_since(intended));
        }
        if progress.closed {
            conversations.remove(&id);
        }
    }

    /// An agent saw the first offer of `id`; false when it was seen before.
    pub(super) fn offered(&self, id: &str, at: Instant) -> bool {
        let mut state = self.lock();
        let TrackerState {
            conversations,
            runs,
            ..
        } = &mut *state;
        let progress = conversations.entry(id.to_owned()).or_default();
        if progress.offered.is_some() {
            return false;
        }
        progress.offered = Some(at);
        if let Some((run, intended)) = progress.created
            && let Some(offers) = runs.get_mut(&run)
        {
            offers.record(at.saturating_duration_since(intended));
        }
        true
    }

    /// The conversation was closed with wrap-up.
    pub(super) fn closed(&self, id: &str) {
        let mut state = self.lock();
        let Some(progress) = state.conversations.get_mut(id) else {
            return;
        };
        if let Some(waiter) = progress.waiter.take() {
            let _ = waiter.send(());
            state.conversations.remove(id);
        } else if progress.created.is_some() {
            state.conversations.remove(id);
        } else {
            progress.closed = true;
        }
    }

    /// Resolves once `id` is closed with wrap-up (at once if it already is).
    pub(super) fn wait_closed(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        let progress = state.conversations.entry(id.to_owned()).or_default();
        if progress.closed {
            let _ = tx.send(());
            state.conversations.remove(id);
        } else {
            progress.waiter = Some(tx);
        }
        rx
    }

    /// Offers of `run` seen so far.
    pub(super) fn offers_seen(&self, run: u32) -> u64 {
        self.lock()
            .runs
            .get(&run)
            .map_or(0, |offers| offers.seen + offers.late)
    }

    /// Ends `run`: every conversation it created and no agent was offered counts as
    /// missing, with the time it waited until now.
    pub(super) fn finish_run(&self, run: u32) -> OfferRun {
        let now = Instant::now();
        let mut state = self.lock();
        let mut offers = state.runs.remove(&run).expect("a run in progress");
        for progress in state.conversations.values() {
            if let Some((r, intended)) = progress.created
                && r == run
                && progress.offered.is_none()
            {
                offers
                    .latency
                    .saturating_record(micros(now.saturating_duration_since(intended)));
                offers.missing += 1;
            }
        }
        offers
    }

    pub(super) fn error(&self, what: &str, err: impl std::fmt::Display) {
        let mut state = self.lock();
        state.errors += 1;
        state
            .first_error
            .get_or_insert_with(|| format!("{what}: {err}"));
    }

    pub(super) fn take_errors(&self) -> (u64, Option<String>) {
        let mut state = self.lock();
        (std::mem::take(&mut state.errors), state.first_error.take())
    }

    /// Waits (bounded) until no offer is being answered.
    pub(super) async fn drain(&self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.busy.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
