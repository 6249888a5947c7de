//! Change notices: a commit wakes exactly the live streams it concerns.
//!
//! Every server stream (an agent's offers, a supervisor's agent states, a conversation,
//! the internal event feeds) shows the changes of some topics: one agent, one tenant, one
//! conversation, or the whole log. A stream [`Changes::watch`]es its topics before it
//! reads, then waits on [`Watch::changed`]; a commit in this process
//! [`Changes::publish_committed`]s the topics of its events, which wakes those streams and
//! no others. An idle stream costs no query and no wake-up; a busy tenant does not wake the
//! streams of another.
//!
//! Changes committed by another replica sharing the database are found by one follower
//! per process ([`spawn_follower`]): one query per poll interval reads the topics of the
//! events committed since it last looked and publishes those this process did not commit
//! itself. That is the only polling left, and it does not grow with the number of streams.
//!
//! A wake-up is a hint, never data: a woken stream reads the store after its own cursor,
//! so a spurious or merged wake-up costs one read and a missed one cannot happen (a
//! publish between a stream's read and its wait is kept as a permit by [`Notify`]).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Who watches what, and the sequences this process committed that the follower has not
/// passed yet.
struct Registry<T> {
    next_id: u64,
    watchers: HashMap<T, HashMap<u64, Arc<Notify>>>,
    streams: usize,
    local: BTreeSet<i64>,
    /// Whether a follower runs: only then are local sequences kept for it to skip.
    followed: bool,
}

/// The change notices of one service process; cheap to clone.
pub struct Changes<T> {
    registry: Arc<Mutex<Registry<T>>>,
}

impl<T> Clone for Changes<T> {
    fn clone(&self) -> Self {
        Changes {
            registry: self.registry.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Changes<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("streams", &lock(&self.registry).streams)
            .finish()
    }
}

impl<T: Eq + Hash + Clone> Default for Changes<T> {
    fn default() -> Self {
        Changes::new()
    }
}

/// A stream's registration; dropping it unregisters.
pub struct Watch<T: Eq + Hash> {
    id: u64,
    topics: Vec<T>,
    notify: Arc<Notify>,
    registry: Weak<Mutex<Registry<T>>>,
}

impl<T: Eq + Hash> Watch<T> {
    /// Waits until a change of one of the watched topics was published since the last
    /// wait returned (or since the watch began).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl<T: Eq + Hash> Drop for Watch<T> {
    fn drop(&mut self) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut registry = lock(&registry);
        registry.streams = registry.streams.saturating_sub(1);
        for topic in &self.topics {
            if let Some(watchers) = registry.watchers.get_mut(topic) {
                watchers.remove(&self.id);
                if watchers.is_empty() {
                    registry.watchers.remove(topic);
                }
            }
        }
    }
}

fn lock<T>(registry: &Mutex<Registry<T>>) -> std::sync::MutexGuard<'_, Registry<T>> {
    // A panic while holding the lock leaves only maps of wakers behind: still usable.
    registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<T: Eq + Hash + Clone> Changes<T> {
    /// No watchers yet.
    pub fn new() -> Changes<T> {
        Changes {
            registry: Arc::new(Mutex::new(Registry {
                next_id: 0,
                watchers: HashMap::new(),
                streams: 0,
                local: BTreeSet::new(),
                followed: false,
            })),
        }
    }

    /// Registers a stream for `topics`. Register before reading what the stream shows,
    /// so that a change committed meanwhile wakes the first wait.
    pub fn watch(&self, topics: impl IntoIterator<Item = T>) -> Watch<T> {
        let notify = Arc::new(Notify::new());
        let mut topics: Vec<T> = topics.into_iter().collect();
        dedup(&mut topics);
        let mut registry = lock(&self.registry);
        let id = registry.next_id;
        registry.next_id += 1;
        registry.streams += 1;
        for topic in &topics {
            registry
                .watchers
                .entry(topic.clone())
                .or_default()
                .insert(id, notify.clone());
        }
        Watch {
            id,
            topics,
            notify,
            registry: Arc::downgrade(&self.registry),
        }
    }

    /// Wakes the streams watching any of `topics`.
    pub fn publish(&self, topics: impl IntoIterator<Item = T>) {
        let registry = lock(&self.registry);
        if registry.streams == 0 {
            return;
        }
        for topic in topics {
            if let Some(watchers) = registry.watchers.get(&topic) {
                for notify in watchers.values() {
                    notify.notify_one();
                }
            }
        }
    }

    /// Wakes the streams watching `topics` after this process committed the events
    /// numbered `sequences`; the follower will not publish those again.
    pub fn publish_committed(
        &self,
        sequences: impl IntoIterator<Item = i64>,
        topics: impl IntoIterator<Item = T>,
    ) {
        {
            let mut registry = lock(&self.registry);
            if registry.followed {
                registry.local.extend(sequences);
            }
        }
        self.publish(topics);
    }

    /// How many streams are registered now.
    pub fn streams(&self) -> usize {
        lock(&self.registry).streams
    }

    /// Publishes what another process committed: the events after the follower's cursor
    /// that this process did not commit. Returns the new cursor.
    fn publish_followed(&self, cursor: i64, events: Vec<(i64, Vec<T>)>) -> i64 {
        let mut last = cursor;
        let mut foreign = Vec::new();
        {
            let mut registry = lock(&self.registry);
            for (sequence, topics) in events {
                last = last.max(sequence);
                if !registry.local.remove(&sequence) {
                    foreign.extend(topics);
                }
            }
            // Local commits at or below the cursor were all read by now.
            let keep = registry.local.split_off(&(last + 1));
            registry.local = keep;
        }
        if !foreign.is_empty() {
            self.publish(foreign);
        }
        last
    }
}

fn dedup<T: Eq + Hash + Clone>(topics: &mut Vec<T>) {
    let mut seen = std::collections::HashSet::new();
    topics.retain(|topic| seen.insert(topic.clone()));
}

/// How many events one follower read fetches at most.
pub const FOLLOW_BATCH: i64 = 1_000;

/// Follows the event log for changes committed by other replicas, until `stop`.
///
/// `cursor` is the log's end when the process starts, read before any stream can
/// register (what was committed before is in every stream's first read). `end()` reads
/// the log's current end; `read(cursor)` returns up to [`FOLLOW_BATCH`] events after
/// `cursor` as `(sequence, topics)` in sequence order. The follower reads every `poll`
/// while any stream is registered, at once again while a read came back full, and only
/// the log's end while none is.
pub fn spawn_follower<T, S, SF, R, RF, E>(
    changes: Changes<T>,
    poll: Duration,
    stop: CancellationToken,
    mut cursor: i64,
    end: S,
    read: R,
) -> tokio::task::JoinHandle<()>
where
    T: Eq + Hash + Clone + Send + 'static,
    S: Fn() -> SF + Send + 'static,
    SF: Future<Output = Result<i64, E>> + Send,
    R: Fn(i64) -> RF + Send + 'static,
    RF: Future<Output = Result<Vec<(i64, Vec<T>)>, E>> + Send,
    E: std::fmt::Display + Send,
{
    lock(&changes.registry).followed = true;
    tokio::spawn(async move {
        loop {
            let mut again = false;
            if changes.streams() > 0 {
                match read(cursor).await {
                    Ok(events) => {
                        again = events.len() as i64 >= FOLLOW_BATCH;
                        cursor = changes.publish_followed(cursor, events);
                    }
                    Err(err) => tracing::warn!(error = %err, "following the event log failed"),
                }
            } else {
                // Nobody listens: skip what nobody would be told. The end is read before
                // looking again, so a stream that registered meanwhile read everything up
                // to it in its own first read; if one did, read instead.
                match end().await {
                    Ok(end) if changes.streams() == 0 => {
                        cursor = changes.publish_followed(cursor.max(end), Vec::new());
                    }
                    Ok(_) => again = true,
                    Err(err) => tracing::warn!(error = %err, "reading the event log's end failed"),
                }
            }
            if again {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(poll) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    enum Topic {
        Agent(&'static str),
        Tenant(&'static str),
    }

    /// Whether the watch was woken, without waiting.
    fn woken(watch: &Watch<Topic>) -> bool {
        use std::task::{Context, Poll};
        let mut changed = Box::pin(watch.changed());
        let waker = std::task::Waker::noop();
        matches!(
            changed.as_mut().poll(&mut Context::from_waker(waker)),
            Poll::Ready(())
        )
    }

    #[test]
    fn a_publish_wakes_only_the_streams_of_its_topics() {
        let changes = Changes::new();
        let ada = changes.watch([Topic::Agent("ada")]);
        let bob = changes.watch([Topic::Agent("bob")]);
        let tenant = changes.watch([Topic::Tenant("t1"), Topic::Tenant("t1")]);
        changes.publish([Topic::Agent("ada"), Topic::Tenant("t1")]);
        assert!(woken(&ada));
        assert!(!woken(&bob), "another agent's stream stays asleep");
        assert!(woken(&tenant));
        // A wake-up is used once.
        assert!(!woken(&ada));
    }

    #[test]
    fn a_change_published_before_the_wait_is_not_lost() {
        let changes = Changes::new();
        let watch = changes.watch([Topic::Agent("ada")]);
        // Published while the stream was reading: the next wait returns at once.
        changes.publish([Topic::Agent("ada")]);
        changes.publish([Topic::Agent("ada")]);
        assert!(woken(&watch));
    }

    #[test]
    fn dropping_a_watch_unregisters_it() {
        let changes = Changes::new();
        let first = changes.watch([Topic::Agent("ada"), Topic::Tenant("t1")]);
        let second = changes.watch([Topic::Agent("ada")]);
        assert_eq!(changes.streams(), 2);
        drop(first);
        assert_eq!(changes.streams(), 1);
        drop(second);
        assert_eq!(changes.streams(), 0);
        assert!(lock(&changes.registry).watchers.is_empty());
    }

    #[test]
    fn without_a_follower_nothing_is_kept_per_commit() {
        let changes: Changes<Topic> = Changes::new();
        let _watch = changes.watch([Topic::Tenant("t1")]);
        changes.publish_committed(1..=1_000, [Topic::Tenant("t1")]);
        assert!(lock(&changes.registry).local.is_empty());
    }

    #[test]
    fn the_follower_publishes_only_what_another_process_committed() {
        let changes = Changes::new();
        let ada = changes.watch([Topic::Agent("ada")]);
        let bob = changes.watch([Topic::Agent("bob")]);
        lock(&changes.registry).followed = true;
        changes.publish_committed([11], [Topic::Agent("ada")]);
        assert!(woken(&ada));
        // The follower reads 11 (ours) and 12 (another replica's, for bob).
        let cursor = changes.publish_followed(
            10,
            vec![
                (11, vec![Topic::Agent("ada")]),
                (12, vec![Topic::Agent("bob")]),
            ],
        );
        assert_eq!(cursor, 12);
        assert!(!woken(&ada), "our own commit is not published twice");
        assert!(woken(&bob));
        assert!(lock(&changes.registry).local.is_empty());
    }

    /// Paused time: the follower's poll sleeps run in virtual time, in order.
    #[tokio::test(start_paused = true)]
    async fn the_follower_reads_only_while_someone_listens() {
        let changes: Changes<Topic> = Changes::new();
        let reads = Arc::new(AtomicI64::new(0));
        let stop = CancellationToken::new();
        let counted = reads.clone();
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let follower = spawn_follower(
            changes.clone(),
            Duration::from_millis(1),
            stop.clone(),
            0,
            || async { Ok::<_, String>(0) },
            move |cursor| {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = seen_tx.send(cursor);
                async move { Ok::<_, String>(vec![(cursor + 1, vec![Topic::Tenant("t1")])]) }
            },
        );
        // Five poll intervals (virtual) with nobody listening: no read.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(reads.load(Ordering::SeqCst), 0);
        let watch = changes.watch([Topic::Tenant("t1")]);
        // A stream registers: the follower reads and wakes it.
        let first = seen_rx.recv().await.unwrap();
        watch.changed().await;
        let second = seen_rx.recv().await.unwrap();
        assert_eq!(second, first + 1, "the cursor moves past what was read");
        stop.cancel();
        follower.await.unwrap();
    }
}
