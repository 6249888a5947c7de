//! Queue members kept in memory between matcher passes, in step with the event log.
//!
//! Reading every member of a queue on every pass made the cost of an offer grow with the
//! queue (2,000 rows read per pass at 2,000 agents). The matcher keeps each queue's
//! members instead and, before each pass, reads the event log since it last looked: every
//! agent an event names is read again. Presence, capacity, offers, profiles and queue
//! memberships all write an event naming the agent, whichever replica made the change, so
//! the copy follows the store. Offers stay conditional claims in the store: a member seen
//! stale can only lose a race (its queue is then read again), never be promised twice.
//! The periodic full pass starts from an empty copy, a safety net against anything missed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use sqlx::AnyConnection;

use crate::domain::Agent;
use crate::error::Result;
use crate::store::{Store, Topic, catalog, events};

/// Most events read to catch up; beyond, the copy is dropped and read again as needed.
const CATCH_UP_LIMIT: i64 = 1_000;

/// The members of the queues the matcher has read, as of event `cursor`.
#[derive(Debug, Default)]
pub struct Members {
    cursor: Option<i64>,
    queues: HashMap<String, Arc<Vec<Agent>>>,
}

impl Members {
    /// Forgets everything: the next pass reads each queue again.
    pub fn clear(&mut self) {
        self.cursor = None;
        self.queues.clear();
    }

    /// Forgets one queue's members (after a lost race showed them stale).
    pub fn forget(&mut self, queue_id: &str) {
        self.queues.remove(queue_id);
    }

    /// Brings the copy up to the end of the event log: each agent named by an event since
    /// the last look is read again and put in, moved between or taken out of queues.
    pub async fn catch_up(&mut self, store: &Store) -> Result<()> {
        let mut conn = store.conn().await?;
        let Some(cursor) = self.cursor.filter(|_| !self.queues.is_empty()) else {
            // Nothing kept: start from the log's end, before any queue is read.
            self.queues.clear();
            self.cursor = Some(events::last_sequence(&mut conn).await?);
            return Ok(());
        };
        let changes = events::topics_after(&mut conn, cursor, CATCH_UP_LIMIT + 1).await?;
        if changes.len() as i64 > CATCH_UP_LIMIT {
            self.queues.clear();
            self.cursor = Some(events::last_sequence(&mut conn).await?);
            return Ok(());
        }
        let mut last = cursor;
        let mut named = BTreeSet::new();
        for (sequence, topics) in changes {
            last = last.max(sequence);
            for topic in topics {
                if let Topic::Agent {
                    tenant_id,
                    agent_id,
                } = topic
                {
                    named.insert((tenant_id, agent_id));
                }
            }
        }
        for (tenant_id, agent_id) in named {
            let agent = catalog::get_agent(&mut conn, &tenant_id, &agent_id).await?;
            self.put(&tenant_id, &agent_id, agent.as_ref());
        }
        self.cursor = Some(last);
        Ok(())
    }

    /// Puts `agent` (as read now; `None` when it has no profile any more) in the queues
    /// it belongs to and takes it out of the others.
    fn put(&mut self, tenant_id: &str, agent_id: &str, agent: Option<&Agent>) {
        for (queue_id, members) in &mut self.queues {
            let at = members
                .binary_search_by(|m| m.agent_id.as_str().cmp(agent_id))
                .ok()
                .filter(|&i| members[i].tenant_id == tenant_id);
            let member = agent.filter(|a| a.queue_ids.iter().any(|q| q == queue_id));
            match (member, at) {
                (Some(agent), Some(i)) => Arc::make_mut(members)[i] = as_member(agent),
                (Some(agent), None) if members.first().is_none_or(|m| m.tenant_id == tenant_id) => {
                    let members = Arc::make_mut(members);
                    let i = members.partition_point(|m| m.agent_id.as_str() < agent_id);
                    members.insert(i, as_member(agent));
                }
                (None, Some(i)) => {
                    Arc::make_mut(members).remove(i);
                }
                _ => {}
            }
        }
    }

    /// The members of `queue_id`, from memory or read once (sorted by agent id).
    pub async fn of(
        &mut self,
        conn: &mut AnyConnection,
        tenant_id: &str,
        queue_id: &str,
    ) -> Result<Arc<Vec<Agent>>> {
        if let Some(members) = self.queues.get(queue_id) {
            return Ok(members.clone());
        }
        let mut members = catalog::queue_members(conn, tenant_id, queue_id).await?;
        members.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        let members = Arc::new(members);
        if self.cursor.is_some() {
            self.queues.insert(queue_id.to_owned(), members.clone());
        }
        Ok(members)
    }
}

/// An agent as a queue's member list holds it: without its queues, like
/// `catalog::queue_members` reads it.
fn as_member(agent: &Agent) -> Agent {
    Agent {
        queue_ids: Vec::new(),
        ..agent.clone()
    }
}
