//! The queues each agent serves, asked of routing-svc (which owns agents' profiles) and kept
//! for a short while: an agent sees the OPEN conversations of its own queues only (product
//! rule 1 and the visibility rules of the API), and a read must not call routing-svc every
//! time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::routing::Routing;

/// How long an answer may still be used while routing-svc cannot be asked again: reads go
/// on with what was known a moment ago rather than fail during a restart of routing-svc.
const STALE_LIMIT: Duration = Duration::from_secs(300);

/// Most agents remembered; beyond it, answers no longer fresh are forgotten first.
const MAX_ENTRIES: usize = 20_000;

/// A cache of `RoutingInternalService.GetAgentQueues`; cheap to clone.
#[derive(Clone, Debug)]
pub struct AgentQueues {
    routing: Routing,
    fresh_for: Duration,
    known: Arc<Mutex<HashMap<(String, String), Known>>>,
}

#[derive(Clone, Debug)]
struct Known {
    queues: Arc<[String]>,
    asked: Instant,
}

impl AgentQueues {
    /// A cache that asks `routing` again once an answer is older than `fresh_for`.
    pub fn new(routing: Routing, fresh_for: Duration) -> AgentQueues {
        AgentQueues {
            routing,
            fresh_for,
            known: Arc::default(),
        }
    }

    /// The queues `agent_id` of `tenant_id` serves. When routing-svc cannot answer and
    /// nothing recent is known, none: the agent then sees only what it takes part in (never
    /// more than it may) and keeps working on it while routing-svc is away.
    pub async fn of(&self, tenant_id: &str, agent_id: &str) -> Arc<[String]> {
        let key = (tenant_id.to_owned(), agent_id.to_owned());
        let known = self.lock().get(&key).cloned();
        if let Some(known) = &known
            && known.asked.elapsed() < self.fresh_for
        {
            return known.queues.clone();
        }
        match self.routing.agent_queues(tenant_id, agent_id).await {
            Ok(queues) => {
                let queues: Arc<[String]> = queues.into();
                self.remember(key, queues.clone());
                queues
            }
            Err(status) => match known {
                Some(known) if known.asked.elapsed() < STALE_LIMIT => {
                    warn!(
                        agent_id,
                        error = %status.message(),
                        "routing-svc did not answer an agent's queues; using the last answer"
                    );
                    known.queues
                }
                _ => {
                    warn!(
                        agent_id,
                        error = %status.message(),
                        "routing-svc did not answer an agent's queues; the agent sees only \
                         what it takes part in"
                    );
                    Arc::from([])
                }
            },
        }
    }

    fn remember(&self, key: (String, String), queues: Arc<[String]>) {
        let mut known = self.lock();
        if known.len() >= MAX_ENTRIES && !known.contains_key(&key) {
            let fresh_for = self.fresh_for;
            known.retain(|_, k| k.asked.elapsed() < fresh_for);
            if known.len() >= MAX_ENTRIES {
                known.clear();
            }
        }
        known.insert(
            key,
            Known {
                queues,
                asked: Instant::now(),
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Known>> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_server_kit::IdentityKey;

    #[tokio::test]
    async fn an_agent_whose_queues_cannot_be_asked_serves_none() {
        // Nothing listens on the discard port: routing-svc is away.
        let key = IdentityKey::new("a secret of enough length for the test").unwrap();
        let routing = Routing::new("http://127.0.0.1:9", key, Duration::from_millis(200)).unwrap();
        let queues = AgentQueues::new(routing, Duration::from_secs(5));
        assert!(queues.of("tenant", "agent").await.is_empty());
    }
}
