//! Transfer targets of a conversation and the offer ledger supervisors list.

use super::*;

/// The queue and channel of the conversation's latest enqueue in the tenant, if routing
/// ever took it.
pub async fn conversation_route(
    conn: &mut AnyConnection,
    tenant_id: &str,
    conversation_id: &str,
) -> Result<Option<(String, Channel)>> {
    let row = sqlx::query(
        "SELECT queue_id, channel FROM enqueues WHERE tenant_id = $1 AND conversation_id = $2 \
         ORDER BY entered_time DESC, enqueue_key DESC LIMIT 1",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok((
            row.try_get("queue_id")?,
            enum_column(&row, "channel", Channel::from_i32)?,
        ))
    })
    .transpose()
}

/// What ListOffers filters by; empty fields do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferFilter {
    /// Only this conversation's offers.
    pub conversation_id: Option<String>,
    /// Only offers to this agent.
    pub agent_id: Option<String>,
    /// Only this queue's offers.
    pub queue_id: Option<String>,
    /// Only these kinds.
    pub kinds: Vec<OfferKind>,
    /// Only these states.
    pub states: Vec<OfferState>,
    /// Only offers made in [start, end).
    pub created: Option<(i64, i64)>,
}

/// `column IN (…)` of contract numbers, or nothing for an empty list. The numbers come
/// from checked enums, so they are safe to write into the statement.
pub(super) fn in_numbers(column: &str, numbers: &[i32]) -> String {
    if numbers.is_empty() {
        return String::new();
    }
    let list: Vec<String> = numbers.iter().map(i32::to_string).collect();
    format!(" AND {column} IN ({})", list.join(", "))
}

/// One page of the tenant's offers matching `filter`, newest first.
pub async fn list_offers(
    conn: &mut AnyConnection,
    tenant_id: &str,
    filter: &OfferFilter,
    request: &PageRequest,
) -> Result<(Vec<Offer>, String)> {
    let (time, id) = request.after_time_and_id(i64::MAX)?;
    let (start, end) = filter.created.unwrap_or((i64::MIN, i64::MAX));
    let kinds: Vec<i32> = filter.kinds.iter().map(|k| k.as_i32()).collect();
    let states: Vec<i32> = filter.states.iter().map(|s| s.as_i32()).collect();
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {OFFER_COLUMNS} FROM offers WHERE tenant_id = $1 \
         AND ($2 = '' OR conversation_id = $2) AND ($3 = '' OR agent_id = $3) \
         AND ($4 = '' OR queue_id = $4) AND create_time >= $5 AND create_time < $6{}{} \
         AND (create_time < $7 OR (create_time = $7 AND id < $8)) \
         ORDER BY create_time DESC, id DESC LIMIT $9",
        in_numbers("kind", &kinds),
        in_numbers("state", &states),
    )))
    .bind(tenant_id)
    .bind(filter.conversation_id.clone().unwrap_or_default())
    .bind(filter.agent_id.clone().unwrap_or_default())
    .bind(filter.queue_id.clone().unwrap_or_default())
    .bind(start)
    .bind(end)
    .bind(time)
    .bind(id)
    .bind(request.fetch_limit());
    fetch_page(conn, query, offer_from_row, "offers", request, |o| {
        vec![o.create_time.to_string(), o.id.clone()]
    })
    .await
}
