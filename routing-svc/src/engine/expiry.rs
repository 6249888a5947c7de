//! Offer deadlines: each pending offer times out as its deadline passes, the agent enters
//! RONA and the conversation waits again.
//!
//! This runs apart from the matcher, so a long matching pass never makes a time-out late,
//! and sleeps until the earliest pending deadline (one indexed read) rather than until
//! the matcher's next tick. It is woken early when this process makes an offer (whose
//! deadline may be nearer), and looks again at least every [`LOOK`] for offers another
//! replica made, whose own expiry would otherwise be the only one to see them. Due offers
//! are timed out in batches, a few statements and one transaction each, their agents
//! locked in id order (`catalog::lock_agents`), so that two replicas expiring the same
//! batch queue on the agents rather than deadlock.

use std::time::{Duration, Instant};

use switchboard_server_kit::db::now_micros;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::engine::Context;
use crate::error::Result;
use crate::store::{Store, routing};

/// Longest sleep without looking at the deadlines again.
const LOOK: Duration = Duration::from_secs(1);
/// Shortest time from one round of time-outs to the next: at most this late for an offer
/// falling due just after a round.
const GATHER: Duration = Duration::from_millis(20);
/// Due offers read at a time.
const DUE_BATCH: i64 = 256;
/// Offers timed out in one transaction: a few statements whatever the count (see
/// `routing::expire_offers`), the agents locked for as long.
const PER_TRANSACTION: usize = 128;

/// Runs the expiry until `shutdown`.
pub async fn run(context: Context, shutdown: CancellationToken) {
    let mut last_round: Option<Instant> = None;
    loop {
        let wait = match next_deadline(&context.store).await {
            Ok(Some(deadline)) => {
                let micros = u64::try_from(deadline.saturating_sub(now_micros())).unwrap_or(0);
                Duration::from_micros(micros).min(LOOK)
            }
            Ok(None) => LOOK,
            Err(err) => {
                warn!(error = %err, "reading offer deadlines failed");
                LOOK
            }
        };
        // While deadlines follow each other closely, one round takes what fell due since
        // the last: a round costs about the same for one offer as for a hundred.
        let gathering = last_round.map_or(Duration::ZERO, |last| {
            (last + GATHER).saturating_duration_since(Instant::now())
        });
        let wait = wait.max(gathering);
        if !wait.is_zero() {
            tokio::select! {
                () = shutdown.cancelled() => break,
                // A new offer may fall due sooner: look again.
                () = context.expiry.notified() => continue,
                () = tokio::time::sleep(wait) => {}
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        last_round = Some(Instant::now());
        match expire_due(&context.store, &shutdown).await {
            Ok(0) => {}
            // The conversations wait again: someone else may take them.
            Ok(_) => context.wake_matcher(),
            Err(err) => {
                warn!(error = %err, "expiring offers failed");
                // Not at once again: whatever failed needs a moment.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(LOOK) => {}
                }
            }
        }
    }
    debug!("offer expiry stopped");
}

async fn next_deadline(store: &Store) -> Result<Option<i64>> {
    let mut conn = store.conn().await?;
    routing::next_offer_deadline(&mut conn).await
}

/// Times out every pending offer past its deadline; returns how many.
pub async fn expire_due(store: &Store, shutdown: &CancellationToken) -> Result<usize> {
    // Offers falling due while this runs are left to the next round, so it always ends.
    let until = now_micros();
    let mut expired = 0;
    loop {
        let due = {
            let mut conn = store.conn().await?;
            routing::due_offers(&mut conn, until, DUE_BATCH).await?
        };
        let mut progressed = false;
        for batch in due.chunks(PER_TRANSACTION) {
            if shutdown.is_cancelled() {
                return Ok(expired);
            }
            let done = expire_batch(store, batch).await?;
            expired += done;
            progressed |= done > 0;
        }
        // A batch another replica resolved entirely is theirs to finish.
        if due.len() < usize::try_from(DUE_BATCH).unwrap_or(usize::MAX) || !progressed {
            return Ok(expired);
        }
    }
}

/// Times out the offers of `batch` that are still pending, in one transaction.
async fn expire_batch(store: &Store, batch: &[routing::DueOffer]) -> Result<usize> {
    let mut tx = store.begin().await?;
    let expired = routing::expire_offers(&mut tx, batch, now_micros()).await?;
    if expired.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    tx.commit().await?;
    for offer in &expired {
        info!(offer_id = %offer.id, agent_id = %offer.agent_id, "offer timed out, agent in RONA");
    }
    Ok(expired.len())
}
