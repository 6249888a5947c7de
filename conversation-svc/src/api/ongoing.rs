//! `SupervisorService.StreamOngoingConversations`: a tenant's ongoing conversations for a
//! dashboard, as a snapshot, its end, then each change.
//!
//! The stream watches its tenant's topic and sleeps: another tenant's commits never wake
//! it, and a quiet one costs a timer. The snapshot is read in pages; after a wake-up only
//! the conversations with events after the stream's cursor in the log are read again.

use std::collections::{HashMap, HashSet};

use switchboard_proto::common::v1::SnapshotEnd;
use switchboard_proto::conversation::v1 as pb;
use switchboard_proto::conversation::v1::stream_ongoing_conversations_response::Update;
use switchboard_server_kit::Role;
use tokio::time::Instant;
use tonic::{Request, Status};

use super::stream::{Waiter, Wake, heartbeat_now};
use super::supervisor::{OngoingStream, SupervisorApi};
use super::{authorized, convert, optional_uuid, view_field};
use crate::domain::state::State;
use crate::error::{Error, Result};
use crate::store::{OngoingFilter, Topic};

/// Conversations read per page of the snapshot: what one stream holds in memory at most.
const SNAPSHOT_PAGE: i64 = 200;
/// Events read per look at the tenant's changes.
const CHANGE_BATCH: i64 = 500;
/// Most values of the `states` filter.
const MAX_STATE_FILTER: usize = 10;

impl SupervisorApi {
    pub(super) async fn ongoing(
        &self,
        request: Request<pb::StreamOngoingConversationsRequest>,
    ) -> Result<OngoingStream> {
        let identity = authorized(
            &request,
            &[Role::Supervisor],
            "streaming ongoing conversations",
        )?;
        let req = request.get_ref();
        let view = view_field(req.view, pb::ConversationView::Basic)?;
        let filter = OngoingFilter {
            tenant_id: identity.tenant_id.clone(),
            queue_id: optional_uuid("queue_id", &req.queue_id)?,
            owner_agent_id: optional_uuid("agent_id", &req.agent_id)?,
            states: ongoing_states(&req.states)?,
            full: view == pb::ConversationView::Full,
        };
        let store = self.ctx.store.clone();
        let heartbeat = self.ctx.heartbeat;
        // Watch before reading the cursor: a commit after it wakes the first wait.
        let watch = store
            .changes()
            .watch([Topic::Tenant(identity.tenant_id.clone())]);
        let mut waiter = Waiter::new(watch, self.ctx.stop.clone());
        // Everything up to the cursor is in the snapshot; what commits later is a change.
        let mut cursor = store.last_sequence().await?;
        let stream = async_stream::try_stream! {
            // What the client holds: a removal is sent only for a conversation it has.
            let mut shown: HashSet<uuid::Uuid> = HashSet::new();
            let mut before: Option<(i64, String)> = None;
            loop {
                let page = store
                    .ongoing_page(&filter, before.as_ref(), SNAPSHOT_PAGE)
                    .await
                    .map_err(Status::from)?;
                let last_page = (page.len() as i64) < SNAPSHOT_PAGE;
                before = page.last().map(|c| (c.create_time, c.id.clone()));
                for conv in &page {
                    shown.insert(key(&conv.id));
                    yield update(Update::Conversation(convert::conversation(conv, view)));
                }
                if last_page {
                    break;
                }
            }
            yield update(Update::SnapshotEnd(SnapshotEnd {}));
            let mut last_sent = Instant::now();
            loop {
                let changed = store
                    .changed_after(&filter.tenant_id, cursor, CHANGE_BATCH)
                    .await
                    .map_err(Status::from)?;
                cursor = changed.through;
                let mut now: HashMap<String, _> = store
                    .conversations_by_id(&filter.tenant_id, &changed.conversation_ids, filter.full)
                    .await
                    .map_err(Status::from)?
                    .into_iter()
                    .map(|c| (c.id.clone(), c))
                    .collect();
                for id in &changed.conversation_ids {
                    match now.remove(id) {
                        Some(conv) if filter.matches(&conv) => {
                            shown.insert(key(id));
                            last_sent = Instant::now();
                            yield update(Update::Conversation(convert::conversation(&conv, view)));
                        }
                        _ => {
                            if shown.remove(&key(id)) {
                                last_sent = Instant::now();
                                yield update(Update::RemovedConversationId(id.clone()));
                            }
                        }
                    }
                }
                if waiter.stopping() {
                    break;
                }
                if changed.more {
                    continue;
                }
                match waiter.wait_until(last_sent + heartbeat).await {
                    Wake::Changed => {}
                    Wake::Quiet => {
                        last_sent = Instant::now();
                        yield update(Update::Heartbeat(heartbeat_now()));
                    }
                    Wake::Stopping => break,
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

/// The `states` filter: at most [`MAX_STATE_FILTER`] known states, never CLOSED.
fn ongoing_states(states: &[i32]) -> Result<Vec<i32>> {
    if states.len() > MAX_STATE_FILTER {
        return Err(Error::invalid(
            "states",
            format!("must have at most {MAX_STATE_FILTER} values"),
        ));
    }
    let mut out = Vec::with_capacity(states.len());
    for (i, state) in states.iter().enumerate() {
        match State::from_code(i64::from(*state)) {
            None => {
                return Err(Error::invalid(
                    format!("states[{i}]"),
                    "is not a conversation state",
                ));
            }
            Some(State::Closed) => {
                return Err(Error::invalid(
                    format!("states[{i}]"),
                    "CLOSED conversations are not ongoing",
                ));
            }
            Some(_) => out.push(*state),
        }
    }
    Ok(out)
}

/// A conversation id as the stream remembers it: 16 bytes instead of a string, since a
/// snapshot may hold many thousands.
fn key(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id).unwrap_or_default()
}

fn update(update: Update) -> pb::StreamOngoingConversationsResponse {
    pb::StreamOngoingConversationsResponse {
        update: Some(update),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_states_filter_refuses_closed_unknown_and_too_many() {
        let open = State::Open.code();
        assert_eq!(ongoing_states(&[open]).unwrap(), vec![open]);
        assert!(ongoing_states(&[State::Closed.code()]).is_err());
        assert!(ongoing_states(&[0]).is_err());
        assert!(ongoing_states(&[99]).is_err());
        assert!(ongoing_states(&[open; MAX_STATE_FILTER + 1]).is_err());
    }
}
