//! Closing conversations left in WRAP_UP past their queue's wrap-up time limit (product
//! rule 13): the background task in `crate::wrap_up` calls [`close_due_wrap_ups`].

use prost::Message as _;
use switchboard_proto::conversation::v1 as pb;
use switchboard_proto::routing::internal::v1 as rpb;
use tracing::{info, warn};

use super::convert;
use crate::domain::state::{Action, transition};
use crate::error::{Error, Result};
use crate::store::{CommandKind, Event, Store};

/// How many due conversations one read finds; each closes in its own transaction.
const BATCH: i64 = 100;

/// The longest wrap-up time limit a queue may have (routing-svc refuses more).
const MAX_LIMIT_US: i64 = 86_400_000_000;

/// A wrap-up time limit as routing-svc sends it, in microseconds: 0 when unset or not
/// positive, at most one day.
pub(super) fn limit_micros(limit: Option<&prost_types::Duration>) -> i64 {
    limit.map_or(0, |d| {
        d.seconds
            .clamp(0, MAX_LIMIT_US / 1_000_000)
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(d.nanos.max(0)) / 1_000)
            .min(MAX_LIMIT_US)
    })
}

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Conversations closed by the limit.
    pub closed: usize,
    /// Conversations that could not be closed now (logged); they stay due.
    pub failed: usize,
}

/// Closes every conversation whose wrap-up deadline has passed at `now`, a batch at a
/// time. A conversation whose wrap-up was submitted first, or that another replica closed,
/// is left alone.
pub async fn close_due_wrap_ups(store: &Store, now: i64) -> Result<Swept> {
    let mut swept = Swept::default();
    loop {
        let due = store.due_wrap_ups(now, BATCH).await?;
        let full = due.len() as i64 == BATCH;
        let mut closed_here = 0;
        for (tenant_id, id) in due {
            match close_expired(store, &tenant_id, &id, now).await {
                Ok(true) => closed_here += 1,
                Ok(false) => {}
                Err(err) => {
                    swept.failed += 1;
                    warn!(conversation_id = %id, error = %err, "closing on the wrap-up time limit failed");
                }
            }
        }
        swept.closed += closed_here;
        if !full || closed_here == 0 {
            return Ok(swept);
        }
    }
}

/// Closes conversation `id` on its wrap-up time limit, in one transaction: CLOSED with
/// close reason WRAP_UP_TIME_LIMIT, the owner's segment ended, a CLOSED event with no
/// actor and the owner's capacity released. Returns whether it closed it.
async fn close_expired(store: &Store, tenant_id: &str, id: &str, now: i64) -> Result<bool> {
    let mut m = store.begin().await?;
    let Some(reopen_window_secs) = m.claim_wrap_up_expiry(id, now).await? else {
        return Ok(false);
    };
    let mut conv = m
        .conversation_for_update(tenant_id, id)
        .await?
        .ok_or_else(|| Error::conversation_not_found(id))?;
    let next =
        transition(conv.state, Action::ExpireWrapUp).map_err(|e| Error::wrong_state(id, e))?;
    let agent_id = conv.owner_agent_id.clone();
    m.end_segment(&conv.current_segment_id, "closed", &[], "", now)
        .await?;
    // Closed: nobody takes part any more (the owner stays named as the last owner).
    m.release_participants(&mut conv, now).await?;
    conv.state = next;
    conv.update_time = now;
    conv.close_time = Some(now);
    conv.close_reason = pb::CloseReason::WrapUpTimeLimit as i32;
    m.save_conversation(&conv).await?;
    let mut closed = Event::about(&conv, pb::EventType::Closed as i32, "", now);
    closed.detail = convert::close_code(pb::CloseReason::WrapUpTimeLimit).to_owned();
    closed.reopen_window_secs = reopen_window_secs;
    m.event(closed);
    if !agent_id.is_empty() {
        let release = rpb::ReleaseCapacityRequest {
            tenant_id: conv.tenant_id.clone(),
            conversation_id: conv.id.clone(),
            agent_id: agent_id.clone(),
        };
        m.add_command(
            CommandKind::ReleaseCapacity,
            &conv.tenant_id,
            &conv.id,
            release.encode_to_vec(),
            now,
        )
        .await?;
    }
    m.commit(None, &()).await?;
    info!(conversation_id = %id, agent_id = %agent_id, "conversation closed on the wrap-up time limit");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_microseconds_within_a_day() {
        let d = |seconds, nanos| Some(prost_types::Duration { seconds, nanos });
        assert_eq!(limit_micros(None), 0);
        assert_eq!(limit_micros(d(1, 500_000_000).as_ref()), 1_500_000);
        assert_eq!(limit_micros(d(-5, 0).as_ref()), 0);
        assert_eq!(limit_micros(d(172_800, 0).as_ref()), MAX_LIMIT_US);
    }
}
