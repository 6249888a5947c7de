//! What the run counts, the status line printed once a second, and the closing summary.

use std::collections::HashMap;
use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use switchboard_proto::common::v1::Channel;
use tokio::sync::watch;

use super::{Summary, World};

/// Highest latency the histogram holds (longer ones are recorded as this), in µs.
const MAX_LATENCY_US: u64 = 600_000_000;

/// Where a conversation created by the run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Waiting,
    Active,
    Closed,
}

/// One conversation, keyed by id. An offer can reach the agent's stream before the create's
/// answer reaches the arrivals task, so either side may create the entry.
#[derive(Debug)]
struct Tracked {
    /// When the create was due (its intended start); `None` for a conversation the run did
    /// not create (one already waiting in the queue when it started).
    created: Option<Instant>,
    /// When its first offer was seen on an agent's stream.
    first_offer_seen: Option<Instant>,
    stage: Stage,
}

/// Counters of the run, shared by arrivals, agents and the status line.
pub struct Stats {
    created: AtomicU64,
    offered: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    missed: AtomicU64,
    rona: AtomicU64,
    closed: AtomicU64,
    breaks: AtomicU64,
    lost_races: AtomicU64,
    messages: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    conversations: Mutex<HashMap<String, Tracked>>,
    /// Created (intended start) → first offer seen on an agent's stream, in µs.
    offer_latency: Mutex<Histogram<u64>>,
}

/// The counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Conversations the run created.
    pub created: u64,
    /// Of those, waiting for an agent (not yet accepted).
    pub waiting: u64,
    /// Of those, accepted and not yet closed.
    pub active: u64,
    /// Conversations whose first offer was seen on an agent's stream.
    pub offered: u64,
    /// Offers accepted.
    pub accepted: u64,
    /// Offers rejected.
    pub rejected: u64,
    /// Offers left unanswered on purpose.
    pub missed: u64,
    /// Offers that timed out (each put its agent in RONA).
    pub rona: u64,
    /// Conversations closed by their agent's wrap-up.
    pub closed: u64,
    /// Breaks agents took (Away, then Available again).
    pub breaks: u64,
    /// Answers that lost a race the engine resolves on purpose (an offer withdrawn or
    /// timed out just before the agent's answer, capacity taken meanwhile): not errors.
    pub lost_races: u64,
    /// Messages sent by customers and agents.
    pub messages: u64,
    /// Unexpected errors.
    pub errors: u64,
    /// Created → first offer seen, p50, in ms.
    pub offer_p50_ms: f64,
    /// Created → first offer seen, p99, in ms.
    pub offer_p99_ms: f64,
    /// Created → first offer seen, max, in ms.
    pub offer_max_ms: f64,
}

impl Stats {
    /// Empty counters.
    pub fn new() -> Stats {
        Stats {
            created: AtomicU64::new(0),
            offered: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            rona: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            breaks: AtomicU64::new(0),
            lost_races: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            conversations: Mutex::new(HashMap::new()),
            offer_latency: Mutex::new(
                Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            ),
        }
    }

    fn record_latency(&self, from: Instant, to: Instant) {
        let us = u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX);
        self.offer_latency
            .lock()
            .expect("histogram lock")
            .saturating_record(us.max(1));
        self.offered.fetch_add(1, Ordering::Relaxed);
    }

    /// A conversation was created; `due` is when its create was meant to start.
    pub fn created(&self, id: &str, due: Instant) {
        self.created.fetch_add(1, Ordering::Relaxed);
        let mut conversations = self.conversations.lock().expect("conversations lock");
        let entry = conversations
            .entry(id.to_owned())
            .or_insert_with(|| Tracked {
                created: None,
                first_offer_seen: None,
                stage: Stage::Waiting,
            });
        entry.created = Some(due);
        if let Some(seen) = entry.first_offer_seen {
            self.record_latency(due, seen);
        }
    }

    /// An agent's stream showed a new offer of this conversation.
    pub fn offer_seen(&self, conversation_id: &str, at: Instant) {
        let mut conversations = self.conversations.lock().expect("conversations lock");
        let entry = conversations
            .entry(conversation_id.to_owned())
            .or_insert_with(|| Tracked {
                created: None,
                first_offer_seen: None,
                stage: Stage::Waiting,
            });
        if entry.first_offer_seen.is_none() {
            entry.first_offer_seen = Some(at);
            if let Some(due) = entry.created {
                self.record_latency(due, at);
            }
        }
    }

    fn set_stage(&self, conversation_id: &str, stage: Stage) {
        if let Some(entry) = self
            .conversations
            .lock()
            .expect("conversations lock")
            .get_mut(conversation_id)
        {
            entry.stage = stage;
        }
    }

    /// An agent accepted an offer of this conversation.
    pub fn accepted(&self, conversation_id: &str) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.set_stage(conversation_id, Stage::Active);
    }

    /// An agent wrapped this conversation up: it is closed.
    pub fn closed(&self, conversation_id: &str) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        self.set_stage(conversation_id, Stage::Closed);
    }

    /// A conversation still waiting at the end was claimed and closed with wrap-up.
    pub fn closed_at_end(&self, conversation_id: &str) {
        self.set_stage(conversation_id, Stage::Closed);
    }

    /// An agent rejected an offer.
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// An agent left an offer unanswered on purpose.
    pub fn missed(&self) {
        self.missed.fetch_add(1, Ordering::Relaxed);
    }

    /// An offer timed out: its agent entered RONA.
    pub fn rona(&self) {
        self.rona.fetch_add(1, Ordering::Relaxed);
    }

    /// An agent took a break.
    pub fn took_break(&self) {
        self.breaks.fetch_add(1, Ordering::Relaxed);
    }

    /// An answer lost a race the engine resolves on purpose.
    pub fn lost_race(&self) {
        self.lost_races.fetch_add(1, Ordering::Relaxed);
    }

    /// A message was sent.
    pub fn message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    /// An unexpected error; the first is kept for the summary.
    pub fn error(&self, what: &str, err: impl Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("error lock");
        if first.is_none() {
            *first = Some(format!("{what}: {err}"));
        }
        tracing::debug!(what, error = %err, "simulation call failed");
    }

    /// The number of unexpected errors and the first one.
    pub fn errors(&self) -> (u64, Option<String>) {
        (
            self.errors.load(Ordering::Relaxed),
            self.first_error.lock().expect("error lock").clone(),
        )
    }

    /// Conversations the run created that are not closed yet.
    pub fn open_conversations(&self) -> usize {
        self.conversations
            .lock()
            .expect("conversations lock")
            .values()
            .filter(|t| t.created.is_some() && t.stage != Stage::Closed)
            .count()
    }

    /// Ids of the conversations the run created that are not closed.
    pub fn unclosed_conversations(&self) -> Vec<String> {
        self.conversations
            .lock()
            .expect("conversations lock")
            .iter()
            .filter(|(_, t)| t.created.is_some() && t.stage != Stage::Closed)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let (mut waiting, mut active) = (0, 0);
        for tracked in self
            .conversations
            .lock()
            .expect("conversations lock")
            .values()
            .filter(|t| t.created.is_some())
        {
            match tracked.stage {
                Stage::Waiting => waiting += 1,
                Stage::Active => active += 1,
                Stage::Closed => {}
            }
        }
        let latency = self.offer_latency.lock().expect("histogram lock");
        let ms = |us: u64| us as f64 / 1000.0;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Snapshot {
            created: load(&self.created),
            waiting,
            active,
            offered: load(&self.offered),
            accepted: load(&self.accepted),
            rejected: load(&self.rejected),
            missed: load(&self.missed),
            rona: load(&self.rona),
            closed: load(&self.closed),
            breaks: load(&self.breaks),
            lost_races: load(&self.lost_races),
            messages: load(&self.messages),
            errors: load(&self.errors),
            offer_p50_ms: ms(latency.value_at_quantile(0.5)),
            offer_p99_ms: ms(latency.value_at_quantile(0.99)),
            offer_max_ms: ms(latency.max()),
        }
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

/// What the run is doing, for the status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Customers arrive.
    Arriving,
    /// Arrivals stopped; agents finish what they hold.
    Draining,
    /// Finished.
    Done,
}

/// Prints the status line once a second until the phase is `Done`: rewritten in place on a
/// terminal, a plain line every ten seconds otherwise (a log file or a pipe).
pub async fn print_every_second(world: Arc<World>, mut phase: watch::Receiver<Phase>) {
    let terminal = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut previous_created = 0;
    let mut seconds = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = phase.wait_for(|p| *p == Phase::Done) => break,
        }
        seconds += 1;
        let now = world.stats.snapshot();
        let line = status_line(
            started.elapsed(),
            *phase.borrow(),
            &now,
            now.created - previous_created,
        );
        previous_created = now.created;
        let mut out = std::io::stdout().lock();
        let _ = if terminal {
            // Carriage return and erase-line: the line is rewritten in place.
            write!(out, "\r\x1b[2K{line}")
        } else if seconds.is_multiple_of(10) {
            writeln!(out, "{line}")
        } else {
            Ok(())
        };
        let _ = out.flush();
    }
    if terminal {
        let mut out = std::io::stdout().lock();
        let line = status_line(started.elapsed(), Phase::Done, &world.stats.snapshot(), 0);
        let _ = writeln!(out, "\r\x1b[2K{line}");
    }
}

fn status_line(elapsed: Duration, phase: Phase, s: &Snapshot, created_last_second: u64) -> String {
    let phase = match phase {
        Phase::Arriving => "arriving",
        Phase::Draining => "draining",
        Phase::Done => "done",
    };
    format!(
        "{:>4}s {phase:<8} created {} ({}/s)  waiting {}  active {}  offered p50 {} p99 {}  accepted {}  rejected {}  RONA {}  closed {}  errors {}",
        elapsed.as_secs(),
        s.created,
        created_last_second,
        s.waiting,
        s.active,
        ms(s.offer_p50_ms, s.offered),
        ms(s.offer_p99_ms, s.offered),
        s.accepted,
        s.rejected,
        s.rona,
        s.closed,
        s.errors,
    )
}

fn ms(value: f64, samples: u64) -> String {
    if samples == 0 {
        "-".into()
    } else if value >= 10_000.0 {
        format!("{:.1}s", value / 1000.0)
    } else {
        format!("{value:.0}ms")
    }
}

/// `2m`, `90s`, `1.5s`, `500ms`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 120.0 && d.as_secs().is_multiple_of(60) {
        format!("{}m", d.as_secs() / 60)
    } else if secs >= 10.0 {
        format!("{secs:.0}s")
    } else if secs >= 1.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A channel's name as people say it.
pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Webchat => "web chat",
        Channel::Sms => "SMS",
        Channel::Messenger => "Messenger",
        Channel::Whatsapp => "WhatsApp",
        Channel::Email => "email",
        Channel::Voice => "voice",
        Channel::Unspecified => "unspecified",
    }
}

/// Prints the closing summary on stdout.
pub fn print_summary(
    summary: &Summary,
    rate: f64,
    agents: &[(String, String)],
    window: &super::reports::Window,
) -> std::io::Result<()> {
    let t = &summary.totals;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "simulation: {} of arrivals, {} to finish the work in hand (seed {})",
        human_duration(summary.arriving),
        human_duration(summary.draining),
        summary.seed
    )?;
    let achieved = t.created as f64 / summary.arriving.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "  created              {:>6}  ({achieved:.2}/s; asked {rate}/s)",
        t.created
    )?;
    writeln!(
        out,
        "  offered              {:>6}  created -> offer on the agent's stream: p50 {}, p99 {}, max {}",
        t.offered,
        ms(t.offer_p50_ms, t.offered),
        ms(t.offer_p99_ms, t.offered),
        ms(t.offer_max_ms, t.offered),
    )?;
    writeln!(
        out,
        "  accepted             {:>6}  rejected {}, missed {} (RONA {}), answers too late for an offer already gone {}",
        t.accepted, t.rejected, t.missed, t.rona, t.lost_races
    )?;
    writeln!(
        out,
        "  closed with wrap-up  {:>6}  messages {}, agents' breaks {}",
        t.closed, t.messages, t.breaks
    )?;
    writeln!(
        out,
        "  claimed at the end   {:>6}  (still waiting when the drain ended: claimed by an agent and closed)",
        summary.closed_at_end
    )?;
    if summary.left_open > 0 {
        writeln!(
            out,
            "  left open            {:>6}  (offered to an agent or in an agent's hands at the very end)",
            summary.left_open
        )?;
    }
    writeln!(out, "  errors               {:>6}", summary.errors)?;
    if let Some(first) = &summary.first_error {
        writeln!(out, "    first: {first}")?;
    }
    super::reports::print(&mut out, &summary.reports, agents, window)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_seen_before_the_create_answer_still_counts_its_latency() {
        let stats = Stats::new();
        let due = Instant::now();
        stats.offer_seen("c-1", due + Duration::from_millis(40));
        assert_eq!(stats.snapshot().offered, 0);
        stats.created("c-1", due);
        let now = stats.snapshot();
        assert_eq!(now.offered, 1);
        assert!(
            (39.0..=41.0).contains(&now.offer_p50_ms),
            "{}",
            now.offer_p50_ms
        );
        // A second offer of the same conversation (after a reject) is not a first offer.
        stats.offer_seen("c-1", due + Duration::from_secs(5));
        assert_eq!(stats.snapshot().offered, 1);
    }

    #[test]
    fn only_the_runs_own_unclosed_conversations_are_left_over() {
        let stats = Stats::new();
        let now = Instant::now();
        stats.created("mine-open", now);
        stats.created("mine-closed", now);
        stats.accepted("mine-closed");
        stats.closed("mine-closed");
        stats.offer_seen("already-waiting", now);
        assert_eq!(stats.unclosed_conversations(), vec!["mine-open".to_owned()]);
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.waiting, snapshot.active), (1, 0));
    }
}
