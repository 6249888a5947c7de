//! Occurrences and their quarter-hour rollups: written with the events they come from,
//! read by every period report.

use serde_json::json;
use switchboard_server_kit::Dialect;

use super::{
    Bind, Column, FactQuery, Sql, Store, execute_json_rows, from_json_aggregate, json_aggregate,
    json_rows,
};
use crate::domain::metrics::{Count, Metric, Occurrence, rollup};
use crate::domain::reports::SLOT_MICROS;

/// Stores `occurrences` and adds them to the rollups, in the caller's transaction: one
/// statement for each table.
pub(super) async fn record(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    dialect: Dialect,
    occurrences: &[Occurrence],
) -> Result<(), sqlx::Error> {
    if occurrences.is_empty() {
        return Ok(());
    }
    use Column::{Int, Text};
    let rows: Vec<serde_json::Value> = occurrences
        .iter()
        .map(|o| {
            json!([
                o.tenant_id,
                o.metric.code(),
                o.at,
                o.queue_id,
                o.channel,
                o.program_id,
                o.agent_id,
                o.label,
                o.value
            ])
        })
        .collect();
    execute_json_rows(
        tx,
        format!(
            "INSERT INTO occurrences (tenant_id, metric, at, queue_id, channel, program_id, \
         agent_id, label, value) {}",
            json_rows(
                dialect,
                &[Text, Text, Int, Text, Int, Text, Text, Text, Int]
            )
        ),
        rows,
    )
    .await?;
    // Summed first, so that each key appears once in the statement (PostgreSQL refuses to
    // update one row twice in one INSERT ... ON CONFLICT).
    let sums: Vec<serde_json::Value> = rollup(occurrences)
        .into_iter()
        .map(|(key, tally)| {
            json!([
                key.tenant_id,
                key.metric.code(),
                key.slot,
                key.queue_id,
                key.channel,
                key.program_id,
                key.agent_id,
                key.label,
                tally.n,
                tally.total
            ])
        })
        .collect();
    execute_json_rows(
        tx,
        format!(
            "INSERT INTO rollups (tenant_id, metric, slot, queue_id, channel, program_id, \
         agent_id, label, n, total) {} \
         ON CONFLICT (tenant_id, metric, slot, queue_id, channel, program_id, agent_id, \
         label) DO UPDATE SET n = rollups.n + excluded.n, \
         total = rollups.total + excluded.total",
            json_rows(
                dialect,
                &[Text, Text, Int, Text, Int, Text, Text, Text, Int, Int]
            )
        ),
        sums,
    )
    .await?;
    Ok(())
}

/// The parts of `[start, end)` outside `[edge_start, edge_end)`, the whole slots the
/// rollups hold: the partial slots at either end, in order, or the whole range when it
/// lies inside one slot (`edge_start > edge_end`). Empty parts are left out.
fn edge_ranges(start: i64, end: i64, edge_start: i64, edge_end: i64) -> Vec<(i64, i64)> {
    if edge_start > edge_end {
        return vec![(start, end)];
    }
    let mut parts = Vec::with_capacity(2);
    if start < edge_start {
        parts.push((start, edge_start.min(end)));
    }
    if edge_end < end {
        parts.push((edge_end.max(start), end));
    }
    parts
}

fn metric_binds(metrics: &[Metric]) -> impl ExactSizeIterator<Item = Bind> + '_ {
    metrics.iter().map(|m| Bind::Text(m.code().to_owned()))
}

impl Sql {
    /// The bucket of `slot`: a `CASE` giving, for the slots before each of `starts`, a
    /// slot of the same bucket (the one before that start; for the range's first bucket
    /// when nothing follows, `first`, the slot of the range's start), and the last start
    /// for the slots from it on.
    fn bucket(&mut self, first: i64, starts: &[i64]) -> &mut Sql {
        let Some(&last) = starts.last() else {
            return self.bind(Bind::Int(first));
        };
        self.push("CASE");
        let mut previous = None;
        for &start in starts {
            self.push(" WHEN slot < ")
                .bind(Bind::Int(start))
                .push(" THEN ")
                .bind(Bind::Int(previous.unwrap_or(start - 1)));
            previous = Some(start);
        }
        self.push(" ELSE ").bind(Bind::Int(last)).push(" END")
    }
}

/// Which dimensions a metric read keeps apart (the others are summed over).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupBy<'a> {
    /// One row per queue.
    pub queue: bool,
    /// One row per agent.
    pub agent: bool,
    /// One row per label.
    pub label: bool,
    /// The slots at which a new bucket starts (ascending; `Frame::bucket_starts`): the
    /// slots between two of them are summed into one row, keyed by a slot of that bucket,
    /// so a report reads a row per period rather than per quarter hour. `None` keeps every
    /// slot apart.
    pub buckets: Option<&'a [i64]>,
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
        group: GroupBy<'_>,
    ) -> Result<Vec<Count>, sqlx::Error> {
        let first_full = query.start.div_euclid(SLOT_MICROS)
            + i64::from(query.start.rem_euclid(SLOT_MICROS) != 0);
        let end_full = query.end.div_euclid(SLOT_MICROS);
        // The dimensions kept apart, and what the others read as.
        let kept = |keep: bool, column: &str| {
            if keep {
                column.to_owned()
            } else {
                "''".to_owned()
            }
        };
        let mut dimensions = String::new();
        for (keep, column) in [
            (group.queue, "queue_id"),
            (group.agent, "agent_id"),
            (group.label, "label"),
        ] {
            if keep {
                dimensions.push_str(", ");
                dimensions.push_str(column);
            }
        }
        let (aggregate, close) = json_aggregate(self.db.dialect);
        let (durations, instants): (Vec<Metric>, Vec<Metric>) =
            metrics.iter().partition(|m| m.is_duration());
        let edge_start = first_full.saturating_mul(SLOT_MICROS);
        let edge_end = end_full.saturating_mul(SLOT_MICROS);
        let mut sql = Sql::new(
            self.db.dialect,
            &format!(
                "SELECT {aggregate}metric, bucket, {}, {}, {}, n, total{close} AS counts \
                 FROM (SELECT metric, ",
                kept(group.queue, "queue_id"),
                kept(group.agent, "agent_id"),
                kept(group.label, "label"),
            ),
        );
        match group.buckets {
            None => sql.push("slot"),
            Some(starts) => sql.bucket(query.start.div_euclid(SLOT_MICROS), starts),
        };
        sql.push(&format!(
            " AS bucket{dimensions}, CAST(SUM(n) AS BIGINT) AS n, \
             CAST(SUM(total) AS BIGINT) AS total \
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
        // The occurrences of the partial slots at the range's ends, each end read as its
        // own index range: never the whole range filtered down to its ends.
        for (from, to) in edge_ranges(query.start, query.end, edge_start, edge_end) {
            if !instants.is_empty() {
                sql.push(&format!(
                    " UNION ALL SELECT metric, at / {SLOT_MICROS} AS slot, queue_id, agent_id, \
                     label, 1 AS n, value AS total FROM occurrences WHERE tenant_id = "
                ))
                .bind(Bind::Text(query.tenant_id.to_owned()))
                .and_in("metric", metric_binds(&instants))
                .push(" AND at >= ")
                .bind(Bind::Int(from))
                .push(" AND at < ")
                .bind(Bind::Int(to))
                .filters(query, Some("agent_id"));
            }
            if !durations.is_empty() {
                // A piece of time lies in one slot: in an edge slot, the part of it inside
                // the range is counted. A piece that overlaps the range's start begins less
                // than a slot before it, which bounds the index scan.
                let after = if from == query.start {
                    from.saturating_sub(SLOT_MICROS)
                } else {
                    from - 1
                };
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
                .bind(Bind::Int(after))
                .push(" AND at < ")
                .bind(Bind::Int(to))
                .push(" AND at + value > ")
                .bind(Bind::Int(query.start))
                .filters(query, Some("agent_id"));
            }
        }
        sql.push(&format!(
            ") counted GROUP BY metric, bucket{dimensions}) grouped"
        ));
        let rows: Vec<(String, i64, String, String, String, i64, i64)> =
            from_json_aggregate(&sql.fetch_all(&self.db).await?, "counts")?;
        let mut counts: Vec<Count> = rows
            .into_iter()
            // A metric this version does not know (written by a newer one) is left out.
            .filter_map(|(code, slot, queue_id, agent_id, label, n, total)| {
                Some(Count {
                    metric: Metric::from_code(&code)?,
                    slot,
                    queue_id,
                    agent_id,
                    label,
                    n,
                    total,
                })
            })
            .collect();
        counts.sort_by(|a, b| {
            (a.metric.code(), a.slot, &a.queue_id, &a.agent_id, &a.label).cmp(&(
                b.metric.code(),
                b.slot,
                &b.queue_id,
                &b.agent_id,
                &b.label,
            ))
        });
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: i64 = SLOT_MICROS;

    #[test]
    fn only_the_partial_slots_at_the_ends_are_read_from_occurrences() {
        // Whole slots only: nothing.
        assert_eq!(edge_ranges(0, 4 * SLOT, 0, 4 * SLOT), vec![]);
        // Partial slots at both ends.
        assert_eq!(
            edge_ranges(5, 4 * SLOT + 7, SLOT, 4 * SLOT),
            vec![(5, SLOT), (4 * SLOT, 4 * SLOT + 7)]
        );
        // Across one slot boundary with no whole slot between: both halves.
        assert_eq!(
            edge_ranges(5, SLOT + 7, SLOT, SLOT),
            vec![(5, SLOT), (SLOT, SLOT + 7)]
        );
        // Inside one slot: the range itself.
        assert_eq!(edge_ranges(5, 9, SLOT, 0), vec![(5, 9)]);
    }
}
