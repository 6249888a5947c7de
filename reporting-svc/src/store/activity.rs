//! Agents' states since their last presence or capacity change: loaded and saved around a
//! run of routing events, read by the agent-activity report for the interval still open.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Bind, Sql, Store};
use crate::domain::activity::{self, AgentState, Presence};
use crate::domain::metrics::{Occurrence, RoutingEvent};

/// The agents' states a run of events touched, read once each and written back once at
/// the end of the run.
#[derive(Debug, Default)]
pub(super) struct AgentStates {
    states: HashMap<(String, String), Option<AgentState>>,
}

impl AgentStates {
    /// Folds `event` into its agent's state, adding what it counts to `occurrences`.
    pub(super) async fn fold(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        event: &RoutingEvent,
        occurrences: &mut Vec<Occurrence>,
    ) -> Result<(), sqlx::Error> {
        if !activity::changes_agent_state(event) {
            return Ok(());
        }
        let key = (event.tenant_id.clone(), event.agent_id.clone());
        let current = match self.states.get(&key) {
            Some(state) => state.clone(),
            None => load(tx, &event.tenant_id, &event.agent_id).await?,
        };
        if let Some(change) = activity::of_routing_event(current.as_ref(), event) {
            occurrences.extend(change.occurrences);
            self.states.insert(key, Some(change.state));
        }
        Ok(())
    }

    /// Writes back every state the run changed.
    pub(super) async fn save(
        self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), sqlx::Error> {
        let states: Vec<AgentState> = self.states.into_values().flatten().collect();
        // Six values a row: far below either database's limit on bound values.
        for rows in states.chunks(400) {
            let mut sql = Sql::new(
                "INSERT INTO agent_states (tenant_id, agent_id, presence, since, \
                 capacity_used, capacity_total) VALUES ",
            );
            for (index, state) in rows.iter().enumerate() {
                sql.push(if index == 0 { "(" } else { ", (" });
                sql.bind(Bind::Text(state.tenant_id.clone()))
                    .push(", ")
                    .bind(Bind::Text(state.agent_id.clone()))
                    .push(", ")
                    .bind(Bind::Text(state.presence.code().to_owned()))
                    .push(", ")
                    .bind(Bind::Int(state.since))
                    .push(", ")
                    .bind(Bind::Int(i64::from(state.used)))
                    .push(", ")
                    .bind(Bind::Int(i64::from(state.total)))
                    .push(")");
            }
            sql.push(
                " ON CONFLICT (tenant_id, agent_id) DO UPDATE SET presence = excluded.presence, \
                 since = excluded.since, capacity_used = excluded.capacity_used, \
                 capacity_total = excluded.capacity_total",
            );
            sql.execute(tx).await?;
        }
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

async fn load(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant_id: &str,
    agent_id: &str,
) -> Result<Option<AgentState>, sqlx::Error> {
    let mut sql = Sql::new(&format!(
        "SELECT {STATE_COLUMNS} FROM agent_states WHERE tenant_id = "
    ));
    sql.bind(Bind::Text(tenant_id.to_owned()))
        .push(" AND agent_id = ")
        .bind(Bind::Text(agent_id.to_owned()));
    sql.query()
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| state_from_row(&row))
        .transpose()
}

impl Store {
    /// The states of the tenant's agents signed in now (only `agent_ids`, when not empty):
    /// the intervals agent activity has not counted yet.
    pub async fn agent_states(
        &self,
        tenant_id: &str,
        agent_ids: &[String],
    ) -> Result<Vec<AgentState>, sqlx::Error> {
        let mut sql = Sql::new(&format!(
            "SELECT {STATE_COLUMNS} FROM agent_states WHERE tenant_id = "
        ));
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
