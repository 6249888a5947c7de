//! Occurrences and their quarter-hour rollups: written with the events they come from,
//! read by every period report.

use sqlx::Row;

use super::{Bind, FactQuery, Sql, Store};
use crate::domain::metrics::{Count, Metric, Occurrence, rollup};
use crate::domain::reports::SLOT_MICROS;

/// Occurrences written per statement (9 values each, well under either database's limit
/// on bound values).
const ROWS_PER_STATEMENT: usize = 400;

/// Stores `occurrences` and adds them to the rollups, in the caller's transaction.
pub(super) async fn record(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    occurrences: &[Occurrence],
) -> Result<(), sqlx::Error> {
    for rows in occurrences.chunks(ROWS_PER_STATEMENT) {
        let mut sql = Sql::new(
            "INSERT INTO occurrences (tenant_id, metric, at, queue_id, channel, program_id, \
             agent_id, label, value) VALUES ",
        );
        for (index, o) in rows.iter().enumerate() {
            sql.push(if index == 0 { "(" } else { ", (" });
            sql.bind(Bind::Text(o.tenant_id.clone()))
                .push(", ")
                .bind(Bind::Text(o.metric.code().to_owned()))
                .push(", ")
                .bind(Bind::Int(o.at))
                .push(", ")
                .bind(Bind::Text(o.queue_id.clone()))
                .push(", ")
                .bind(Bind::Int(i64::from(o.channel)))
                .push(", ")
                .bind(Bind::Text(o.program_id.clone()))
                .push(", ")
                .bind(Bind::Text(o.agent_id.clone()))
                .push(", ")
                .bind(Bind::Text(o.label.clone()))
                .push(", ")
                .bind(Bind::Int(o.value))
                .push(")");
        }
        sql.execute(tx).await?;
    }
    // Summed first, so that each key appears once per statement (PostgreSQL refuses to
    // update one row twice in one INSERT ... ON CONFLICT).
    let sums: Vec<_> = rollup(occurrences).into_iter().collect();
    for rows in sums.chunks(ROWS_PER_STATEMENT) {
        let mut sql = Sql::new(
            "INSERT INTO rollups (tenant_id, metric, slot, queue_id, channel, program_id, \
             agent_id, label, n, total) VALUES ",
        );
        for (index, (key, tally)) in rows.iter().enumerate() {
            sql.push(if index == 0 { "(" } else { ", (" });
            sql.bind(Bind::Text(key.tenant_id.clone()))
                .push(", ")
                .bind(Bind::Text(key.metric.code().to_owned()))
                .push(", ")
                .bind(Bind::Int(key.slot))
                .push(", ")
                .bind(Bind::Text(key.queue_id.clone()))
                .push(", ")
                .bind(Bind::Int(i64::from(key.channel)))
                .push(", ")
                .bind(Bind::Text(key.program_id.clone()))
                .push(", ")
                .bind(Bind::Text(key.agent_id.clone()))
                .push(", ")
                .bind(Bind::Text(key.label.clone()))
                .push(", ")
                .bind(Bind::Int(tally.n))
                .push(", ")
                .bind(Bind::Int(tally.total))
                .push(")");
        }
        sql.push(
            " ON CONFLICT (tenant_id, metric, slot, queue_id, channel, program_id, agent_id, \
             label) DO UPDATE SET n = rollups.n + excluded.n, \
             total = rollups.total + excluded.total",
        );
        sql.execute(tx).await?;
    }
    Ok(())
}

fn metric_binds(metrics: &[Metric]) -> impl ExactSizeIterator<Item = Bind> + '_ {
    metrics.iter().map(|m| Bind::Text(m.code().to_owned()))
}

impl Sql {
    /// `AND` an occurrence lies outside `[edge_start, edge_end)`, the slots the rollups
    /// hold wholly: in the range's partial slots at either end (everything when the range
    /// lies inside one slot, where `edge_start > edge_end`).
    fn edge_slots(&mut self, edge_start: i64, edge_end: i64) -> &mut Sql {
        self.push(" AND (at < ")
            .bind(Bind::Int(edge_start))
            .push(" OR at >= ")
            .bind(Bind::Int(edge_end))
            .push(")")
    }
}

/// Which dimensions a metric read keeps apart (the others are summed over).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupBy {
    /// One row per queue.
    pub queue: bool,
    /// One row per agent.
    pub agent: bool,
    /// One row per label.
    pub label: bool,
}

impl Store {
    /// The counts of `metrics` in the query's range and filters, per slot and the
    /// dimensions of `group`. Slots wholly inside the range are read from the rollups, the
    /// partial slots at its ends from the occurrences, so the counts are exact for any range
    /// and cost what the range holds, not the history. A duration metric's total is the
    /// time inside the range (an edge slot's piece is cut at the range's ends).
    pub async fn metric_counts(
        &self,
        query: &FactQuery<'_>,
        metrics: &[Metric],
        group: GroupBy,
    ) -> Result<Vec<Count>, sqlx::Error> {
        let first_full = query.start.div_euclid(SLOT_MICROS)
            + i64::from(query.start.rem_euclid(SLOT_MICROS) != 0);
        let end_full = query.end.div_euclid(SLOT_MICROS);
        let mut columns = String::from("metric, slot");
        for (keep, column) in [
            (group.queue, "queue_id"),
            (group.agent, "agent_id"),
            (group.label, "label"),
        ] {
            if keep {
                columns.push_str(", ");
                columns.push_str(column);
            }
        }
        let (durations, instants): (Vec<Metric>, Vec<Metric>) =
            metrics.iter().partition(|m| m.is_duration());
        let edge_start = first_full.saturating_mul(SLOT_MICROS);
        let edge_end = end_full.saturating_mul(SLOT_MICROS);
        let mut sql = Sql::new(&format!(
            "SELECT {columns}, CAST(SUM(n) AS BIGINT) AS n, CAST(SUM(total) AS BIGINT) AS total \
             FROM (SELECT metric, slot, queue_id, agent_id, label, n, total FROM rollups \
             WHERE tenant_id = "
        ));
        sql.bind(Bind::Text(query.tenant_id.to_owned()))
            .and_in("metric", metric_binds(metrics))
            .push(" AND slot >= ")
            .bind(Bind::Int(first_full))
            .push(" AND slot < ")
            .bind(Bind::Int(end_full))
            .filters(query, Some("agent_id"));
        if !instants.is_empty() {
            sql.push(&format!(
                " UNION ALL SELECT metric, at / {SLOT_MICROS} AS slot, queue_id, agent_id, \
                 label, 1 AS n, value AS total FROM occurrences WHERE tenant_id = "
            ))
            .bind(Bind::Text(query.tenant_id.to_owned()))
            .and_in("metric", metric_binds(&instants))
            .push(" AND at >= ")
            .bind(Bind::Int(query.start))
            .push(" AND at < ")
            .bind(Bind::Int(query.end))
            .edge_slots(edge_start, edge_end)
            .filters(query, Some("agent_id"));
        }
        if !durations.is_empty() {
            // A piece of time lies in one slot: in an edge slot, the part of it inside the
            // range is counted. A piece that overlaps the range starts less than a slot
            // before it, which bounds the index scan.
            sql.push(&format!(
                " UNION ALL SELECT metric, at / {SLOT_MICROS} AS slot, queue_id, agent_id, \
                 label, 1 AS n, (CASE WHEN at + value < "
            ))
            .bind(Bind::Int(query.end))
            .push(" THEN at + value ELSE ")
            .bind(Bind::Int(query.end))
            .push(" END) - (CASE WHEN at > ")
            .bind(Bind::Int(query.start))
            .push(" THEN at ELSE ")
            .bind(Bind::Int(query.start))
            .push(" END) AS total FROM occurrences WHERE tenant_id = ")
            .bind(Bind::Text(query.tenant_id.to_owned()))
            .and_in("metric", metric_binds(&durations))
            .push(" AND at > ")
            .bind(Bind::Int(query.start.saturating_sub(SLOT_MICROS)))
            .push(" AND at < ")
            .bind(Bind::Int(query.end))
            .push(" AND at + value > ")
            .bind(Bind::Int(query.start))
            .edge_slots(edge_start, edge_end)
            .filters(query, Some("agent_id"));
        }
        sql.push(&format!(") counted GROUP BY {columns} ORDER BY {columns}"));
        let text = |row: &sqlx::any::AnyRow, keep: bool, column: &str| {
            if keep {
                row.try_get::<String, _>(column)
            } else {
                Ok(String::new())
            }
        };
        sql.fetch_all(&self.db)
            .await?
            .iter()
            .filter_map(|row| {
                let code: String = match row.try_get("metric") {
                    Ok(code) => code,
                    Err(err) => return Some(Err(err)),
                };
                // A metric this version does not know (written by a newer one) is left out.
                let metric = Metric::from_code(&code)?;
                Some((|| {
                    Ok(Count {
                        metric,
                        slot: row.try_get("slot")?,
                        queue_id: text(row, group.queue, "queue_id")?,
                        agent_id: text(row, group.agent, "agent_id")?,
                        label: text(row, group.label, "label")?,
                        n: row.try_get("n")?,
                        total: row.try_get("total")?,
                    })
                })())
            })
            .collect()
    }
}
