//! Routing decision records.

use super::*;

/// A short form of a decision's candidates and reasons, to skip recording the same
/// "nobody eligible" decision on every pass.
pub fn decision_summary(candidates: &[Candidate], omitted: &[Omitted]) -> String {
    candidates
        .iter()
        .map(|c| format!("{}:{}", c.agent_id, c.reason))
        .chain(omitted.iter().map(|o| format!("+{}:{}", o.count, o.reason)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Records a routing decision.
pub async fn insert_decision(tx: &mut Tx, decision: &RoutingDecision) -> Result<()> {
    sqlx::query(
        "INSERT INTO routing_decisions (id, tenant_id, conversation_id, queue_id, offer_id, \
         assignment_method, candidates, summary, decide_time, omitted) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&decision.id)
    .bind(&decision.tenant_id)
    .bind(&decision.conversation_id)
    .bind(&decision.queue_id)
    .bind(decision.offer_id.clone())
    .bind(i64::from(decision.assignment_method.as_i32()))
    .bind(to_json(&decision.candidates))
    .bind(decision_summary(&decision.candidates, &decision.omitted))
    .bind(decision.decide_time)
    .bind(to_json(&decision.omitted))
    .execute(tx.conn())
    .await?;
    index_by_agent(tx, decision).await
}

/// Indexes `decision` under each agent it lists, in one statement (at most
/// [`crate::domain::matching::LISTED_CANDIDATES`] rows).
async fn index_by_agent(tx: &mut Tx, decision: &RoutingDecision) -> Result<()> {
    let mut agents: Vec<&str> = decision
        .candidates
        .iter()
        .map(|c| c.agent_id.as_str())
        .collect();
    agents.sort_unstable();
    agents.dedup();
    if agents.is_empty() {
        return Ok(());
    }
    let rows = (0..agents.len())
        .map(|n| format!("($1, ${}, $2, $3)", n + 4))
        .collect::<Vec<_>>()
        .join(", ");
    let query = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO decision_candidates (tenant_id, agent_id, decide_time, decision_id) \
         VALUES {rows}"
    )))
    .bind(&decision.tenant_id)
    .bind(decision.decide_time)
    .bind(&decision.id);
    agents
        .into_iter()
        .fold(query, |query, agent_id| query.bind(agent_id))
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// The (offer id, summary) of the latest decision on a conversation, if any.
pub async fn last_decision(
    conn: &mut AnyConnection,
    tenant_id: &str,
    conversation_id: &str,
) -> Result<Option<(Option<String>, String)>> {
    Ok(sqlx::query_as(
        "SELECT offer_id, summary FROM routing_decisions WHERE tenant_id = $1 \
         AND conversation_id = $2 ORDER BY decide_time DESC, id DESC LIMIT 1",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .fetch_optional(&mut *conn)
    .await?)
}

pub(super) fn decision_from_row(row: &AnyRow) -> Result<RoutingDecision> {
    Ok(RoutingDecision {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        offer_id: row.try_get("offer_id")?,
        conversation_id: row.try_get("conversation_id")?,
        queue_id: row.try_get("queue_id")?,
        assignment_method: enum_column(
            row,
            "assignment_method",
            crate::domain::AssignmentMethod::from_i32,
        )?,
        candidates: json_column(row, "candidates")?,
        omitted: json_column(row, "omitted")?,
        decide_time: row.try_get("decide_time")?,
    })
}

/// Which decisions a list returns; at least one of the ids is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecisionFilter {
    /// Only this conversation's.
    pub conversation_id: Option<String>,
    /// Only this queue's.
    pub queue_id: Option<String>,
    /// Without `conversation_id`: only those listing this agent.
    pub agent_id: Option<String>,
    /// Only those made in [start, end).
    pub decided: Option<(i64, i64)>,
}

impl DecisionFilter {
    /// Every decision of one conversation.
    pub fn conversation(conversation_id: &str) -> DecisionFilter {
        DecisionFilter {
            conversation_id: Some(conversation_id.to_owned()),
            ..DecisionFilter::default()
        }
    }
}

/// One page of the decisions `filter` selects, newest first (indexed by conversation, by
/// queue and by listed agent, each with the time). With a conversation, the agent does not
/// narrow the list (see [`crate::domain::membership::name_if_not_a_member`]).
pub async fn list_decisions(
    conn: &mut AnyConnection,
    tenant_id: &str,
    filter: &DecisionFilter,
    request: &PageRequest,
) -> Result<(Vec<RoutingDecision>, String)> {
    let (time, id) = request.after_time_and_id(i64::MAX)?;
    let (start, end) = filter.decided.unwrap_or((i64::MIN, i64::MAX));
    // An agent's decisions are read through the per-agent index, whose time and id order
    // the page; the others through the decisions' own indexes.
    let agent_id = filter
        .agent_id
        .clone()
        .filter(|_| filter.conversation_id.is_none());
    let (from, time_column, id_column) = if agent_id.is_some() {
        (
            "decision_candidates c JOIN routing_decisions d ON d.id = c.decision_id",
            "c.decide_time",
            "c.decision_id",
        )
    } else {
        ("routing_decisions d", "d.decide_time", "d.id")
    };
    let tenant_column = if agent_id.is_some() {
        "c.tenant_id"
    } else {
        "d.tenant_id"
    };
    // Only the conditions asked for, so that the planner sees plain equalities and uses
    // the index by conversation, queue or agent (an `$n = '' OR …` form hides them from a
    // generic plan).
    let named = [
        ("d.conversation_id", filter.conversation_id.clone()),
        ("d.queue_id", filter.queue_id.clone()),
        ("c.agent_id", agent_id),
    ];
    let mut by = String::new();
    for (n, (column, _)) in named
        .iter()
        .filter(|(_, value)| value.is_some())
        .enumerate()
    {
        by.push_str(&format!(" AND {column} = ${}", n + 7));
    }
    let query = sqlx::query(AssertSqlSafe(format!(
        "SELECT d.id, d.tenant_id, d.offer_id, d.conversation_id, d.queue_id, \
         d.assignment_method, d.candidates, d.omitted, d.decide_time FROM {from} \
         WHERE {tenant_column} = $1{by} AND {time_column} >= $2 AND {time_column} < $3 \
         AND ({time_column} < $4 OR ({time_column} = $4 AND {id_column} < $5)) \
         ORDER BY {time_column} DESC, {id_column} DESC LIMIT $6"
    )))
    .bind(tenant_id)
    .bind(start)
    .bind(end)
    .bind(time)
    .bind(id)
    .bind(request.fetch_limit());
    let query = named
        .into_iter()
        .filter_map(|(_, value)| value)
        .fold(query, |query, value| query.bind(value));
    fetch_page(
        conn,
        query,
        decision_from_row,
        "routing_decisions",
        request,
        |d| vec![d.decide_time.to_string(), d.id.clone()],
    )
    .await
}
