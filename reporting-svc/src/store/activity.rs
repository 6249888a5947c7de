//! Agents' states since their last presence or capacity change: loaded and saved around a
//! run of routing events, read by the agent-activity report for the interval still open.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use switchboard_server_kit::Dialect;

use super::{Bind, Column, Sql, Store, execute_json_rows, json_in, json_rows};
use crate::domain::activity::{self, AgentState, Presence};
use crate::domain::metrics::{Occurrence, RoutingEvent};

/// The agents' states a run of events touched, read once each and written back once at
/// the end of the run.
#[derive(Debug, Default)]
pub(super) struct AgentStates {
    /// Every agent the run names, as stored before the run and folded since.
    states: HashMap<(String, String), Option<AgentState>>,
    /// The agents whose state the run changed.
    changed: HashSet<(String, String)>,
}

impl AgentStates {
    /// The state of every agent whose state one of `events` changes: as `previous` (the
    /// run before, which may not be written yet) left it when it named the agent,
    /// otherwise as stored.
    pub(super) async fn load<'a>(
        conn: &mut sqlx::AnyConnection,
        dialect: Dialect,
        events: impl Iterator<Item = &'a RoutingEvent>,
        previous: Option<&AgentStates>,
    ) -> Result<AgentStates, sqlx::Error> {
        let keys: HashSet<(&str, &str)> = events
            .filter(|event| activity::changes_agent_state(event))
            .map(|event| (event.tenant_id.as_str(), event.agent_id.as_str()))
            .collect();
        let mut states: HashMap<(String, String), Option<AgentState>> = HashMap::new();
        let mut stored: HashSet<(String, String)> = HashSet::new();
        for (tenant, agent) in keys {
            let key = (tenant.to_owned(), agent.to_owned());
            match previous.and_then(|run| run.states.get(&key)) {
                Some(folded) => {
                    states.insert(key, folded.clone());
                }
                None => {
                    stored.insert(key.clone());
                    states.insert(key, None);
                }
            }
        }
        if !stored.is_empty() {
            let agent_ids: Vec<&str> = stored
                .iter()
                .map(|(_, agent)| agent.as_str())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {STATE_COLUMNS} FROM agent_states WHERE agent_id {}",
                json_in(dialect)
            )))
            .bind(serde_json::Value::from(agent_ids).to_string())
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let state = state_from_row(&row)?;
                // An agent id of another tenant is not this agent, and an agent the run
                // before left is as it left it, not as stored.
                let key = (state.tenant_id.clone(), state.agent_id.clone());
                if stored.contains(&key) {
                    states.insert(key, Some(state));
                }
            }
        }
        Ok(AgentStates {
            states,
            changed: HashSet::new(),
        })
    }

    /// Folds `event` into its agent's state, adding what it counts to `occurrences`.
    pub(super) fn fold(&mut self, event: &RoutingEvent, occurrences: &mut Vec<Occurrence>) {
        if !activity::changes_agent_state(event) {
            return;
        }
        let key = (event.tenant_id.clone(), event.agent_id.clone());
        let current = self.states.entry(key.clone()).or_default();
        if let Some(change) = activity::of_routing_event(current.as_ref(), event) {
            occurrences.extend(change.occurrences);
            *current = Some(change.state);
            self.changed.insert(key);
        }
    }

    /// Writes back every state the run changed.
    pub(super) async fn save(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        dialect: Dialect,
    ) -> Result<(), sqlx::Error> {
        let states: Vec<&AgentState> = self
            .changed
            .iter()
            .filter_map(|key| self.states.get(key).and_then(Option::as_ref))
            .collect();
        if states.is_empty() {
            return Ok(());
        }
        use Column::{Int, Text};
        let rows: Vec<serde_json::Value> = states
            .iter()
            .map(|s| {
                json!([
                    s.tenant_id,
                    s.agent_id,
                    s.presence.code(),
                    s.since,
                    s.used,
                    s.total
                ])
            })
            .collect();
        execute_json_rows(
            tx,
            format!(
                "INSERT INTO agent_states (tenant_id, agent_id, presence, since, capacity_used, \
             capacity_total) {} \
             ON CONFLICT (tenant_id, agent_id) DO UPDATE SET presence = excluded.presence, \
             since = excluded.since, capacity_used = excluded.capacity_used, \
             capacity_total = excluded.capacity_total",
                json_rows(dialect, &[Text, Text, Text, Int, Int, Int])
            ),
            rows,
        )
        .await?;
        Ok(())
    }
}

const STATE_COLUMNS: &str = "tenant_id, agent_id, presence, since, capacity_used, capacity_total";

fn state_from_row(row: &AnyRow) -> Result<AgentState, sqlx::Error> {
    let presence: String = row.try_get("presence")?;
    let used: i64 = row.try_get("capacity_used")?;
    let total: i64 = row.try_get("capacity_total")?;
    Ok(AgentState {
        tenant_id: row.try_get("tenant_id")?,
        agent_id: row.try_get("agent_id")?,
        // A presence a newer version wrote and this one does not know is not counted.
        presence: Presence::from_code(&presence).unwrap_or(Presence::Offline),
        since: row.try_get("since")?,
        used: i32::try_from(used).unwrap_or(i32::MAX),
        total: i32::try_from(total).unwrap_or(i32::MAX),
    })
}

impl Store {
    /// The states of the tenant's agents signed in now (only `agent_ids`, when not empty):
    /// the intervals agent activity has not counted yet.
    pub async fn agent_states(
        &self,
        tenant_id: &str,
        agent_ids: &[String],
    ) -> Result<Vec<AgentState>, sqlx::Error> {
        let mut sql = Sql::new(
            self.db.dialect,
            &format!("SELECT {STATE_COLUMNS} FROM agent_states WHERE tenant_id = "),
        );
        sql.bind(Bind::Text(tenant_id.to_owned()))
            .and_in(
                "agent_id",
                agent_ids.iter().map(|id| Bind::Text(id.clone())),
            )
            .push(" AND presence <> ")
            .bind(Bind::Text(Presence::Offline.code().to_owned()))
            .push(" ORDER BY agent_id");
        sql.fetch_all(&self.db)
            .await?
            .iter()
            .map(state_from_row)
            .collect()
    }
}
