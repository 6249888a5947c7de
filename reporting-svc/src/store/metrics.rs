//! Occurrences and their quarter-hour rollups: written with the events they come from,
//! read by every period report.

use futures::StreamExt;
use serde_json::json;
use switchboard_server_kit::Dialect;

use super::{
    Bind, Column, FactQuery, Sql, Store, execute_json_rows, json_rows, packed_aggregate,
    packed_number, packed_text, unpacked,
};
use crate::domain::metrics::{Count, Metric, Occurrence, points_within, rollup};
use crate::domain::reports::SLOT_MICROS;

/// Adds `occurrences` to the rollups, with their points, in the caller's transaction: one
/// statement.
pub(super) async fn record(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    dialect: Dialect,
    occurrences: &[Occurrence],
) -> Result<(), sqlx::Error> {
    if occurrences.is_empty() {
        return Ok(());
    }
    use Column::{Int, Text};
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
                tally.total,
                tally.points
            ])
        })
        .collect();
    execute_json_rows(
        tx,
        format!(
            "INSERT INTO rollups (tenant_id, metric, slot, queue_id, channel, program_id, \
         agent_id, label, n, total, points) {} \
         ON CONFLICT (tenant_id, metric, slot, queue_id, channel, program_id, agent_id, \
         label) DO UPDATE SET n = rollups.n + excluded.n, \
         total = rollups.total + excluded.total, points = rollups.points || excluded.points",
            json_rows(
                dialect,
                &[Text, Text, Int, Text, Int, Text, Text, Text, Int, Int, Text]
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
    /// slots between two of them are summed into one count, keyed by a slot of that
    /// bucket, so a report folds a count per period rather than per quarter hour. `None`
    /// keeps every slot apart.
    pub buckets: Option<&'a [i64]>,
}

impl Store {
    /// The counts of `metrics` in the query's range and filters, per slot and the
    /// dimensions of `group`, in no particular order. Slots wholly inside the range are read
    /// as summed in the rollups; the partial slots at its ends count their rows' points inside
    /// the range, so the counts are exact for any range and cost what the range holds, not
    /// the history. A duration metric's total is the
    /// time inside the range (an edge slot's piece is cut at the range's ends).
    ///
    /// The rows are read as they are stored and summed here: a month of a busy tenant is
    /// tens of thousands of nearly unique rows (about one reassignment per agent and day),
    /// which the databases grouped slower than they read them (SQLite sorts to group; a
    /// month's report spent two thirds of its time there). They are read a week of slots
    /// per statement, so that a year's report holds a week of rows at a time, not the year.
    pub async fn metric_counts(
        &self,
        query: &FactQuery<'_>,
        metrics: &[Metric],
        group: GroupBy<'_>,
    ) -> Result<Vec<Count>, sqlx::Error> {
        if metrics.is_empty() {
            return Ok(Vec::new());
        }
        let dialect = self.db.dialect;
        let first_full = query.start.div_euclid(SLOT_MICROS)
            + i64::from(query.start.rem_euclid(SLOT_MICROS) != 0);
        let end_full = query.end.div_euclid(SLOT_MICROS);
        // The dimensions kept apart, and what the others read as.
        let kept = |keep: bool, column: &'static str| if keep { column } else { "''" };
        let (queue, agent, label) = (
            kept(group.queue, "queue_id"),
            kept(group.agent, "agent_id"),
            kept(group.label, "label"),
        );
        let packed = packed_aggregate(
            dialect,
            &["metric", "slot", queue, agent, label, "n", "total"],
        );
        let mut reads = Vec::new();
        let mut from = first_full;
        while from < end_full {
            let to = from.saturating_add(SLOTS_PER_READ).min(end_full);
            let mut sql = Sql::new(
                dialect,
                &format!("SELECT {packed} AS counts FROM rollups WHERE tenant_id = "),
            );
            sql.bind(Bind::Text(query.tenant_id.to_owned()))
                .and_in("metric", metric_binds(metrics))
                .push(" AND slot >= ")
                .bind(Bind::Int(from))
                .push(" AND slot < ")
                .bind(Bind::Int(to))
                .filters(query, Some("agent_id"));
            reads.push(sql);
            from = to;
        }

        // The partial slots at the range's ends: their rows are read with their points, and
        // only the points inside the range are counted.
        let edge_start = first_full.saturating_mul(SLOT_MICROS);
        let edge_end = end_full.saturating_mul(SLOT_MICROS);
        let mut edge_slots: Vec<i64> = edge_ranges(query.start, query.end, edge_start, edge_end)
            .into_iter()
            .map(|(from, _)| from.div_euclid(SLOT_MICROS))
            .collect();
        edge_slots.dedup();
        let edges = (!edge_slots.is_empty()).then(|| {
            let packed =
                packed_aggregate(dialect, &["metric", "slot", queue, agent, label, "points"]);
            let mut sql = Sql::new(
                dialect,
                &format!("SELECT {packed} AS counts FROM rollups WHERE tenant_id = "),
            );
            sql.bind(Bind::Text(query.tenant_id.to_owned()))
                .and_in("metric", metric_binds(metrics))
                .and_in("slot", edge_slots.iter().map(|&slot| Bind::Int(slot)))
                .filters(query, Some("agent_id"));
            sql
        });

        // Each read's rows are summed while the database answers the next ones
        // (READS_AHEAD).
        let mut sums = Sums::new(query.start.div_euclid(SLOT_MICROS), group.buckets);
        let reads = edges
            .map(|sql| (sql, true))
            .into_iter()
            .chain(reads.into_iter().map(|sql| (sql, false)));
        let mut fetched = futures::stream::iter(reads)
            .map(|(sql, edge)| {
                let db = self.db.clone();
                tokio::spawn(async move { (edge, sql.fetch_all(&db).await) })
            })
            .buffer_unordered(READS_AHEAD);
        while let Some(read) = fetched.next().await {
            let (edge, rows) = read.map_err(|err| sqlx::Error::Io(std::io::Error::other(err)))?;
            let packed = packed_text(&rows?, "counts")?;
            if edge {
                sums.add_edges(packed.as_deref(), query)?;
            } else {
                sums.add(packed.as_deref())?;
            }
        }
        Ok(sums.into_counts())
    }
}

/// Slots of rollups read per statement: a week.
const SLOTS_PER_READ: i64 = 7 * 96;

/// Reads of one report in flight at once, each on its own connection: while one is
/// summed, the database answers the others (on PostgreSQL, each on its own core). A month
/// of a busy tenant by day went from 38 to 28 ms (p50) on PostgreSQL, 24 to 21 on SQLite,
/// against reading one at a time.
const READS_AHEAD: usize = 3;

/// Counts summed per metric, bucket and the dimensions kept apart, as the rows of
/// [`Store::metric_counts`] arrive. The ids are interned (a few hundred agents, queues and
/// labels against tens of thousands of rows), so the sums are keyed by integers: hashing
/// and owning the 36-character ids per row was most of a month's report.
struct Sums<'a> {
    /// The bucket of every slot when `starts` is empty: the range's first slot.
    first: i64,
    starts: Option<&'a [i64]>,
    ids: foldhash::HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    sums: foldhash::HashMap<(Metric, i64, [u32; 3]), (i64, i64)>,
}

impl<'a> Sums<'a> {
    fn new(first: i64, starts: Option<&'a [i64]>) -> Sums<'a> {
        Sums {
            first,
            starts,
            ids: foldhash::HashMap::default(),
            names: vec!["".into()],
            sums: foldhash::HashMap::default(),
        }
    }

    /// The slot that keys `slot`'s bucket: the last bucket start at or before it, or for
    /// a slot before every start the slot before the first (the range's first bucket).
    fn bucket(&self, slot: i64) -> i64 {
        let Some(starts) = self.starts else {
            return slot;
        };
        match starts.partition_point(|&start| start <= slot) {
            0 => starts.first().map_or(self.first, |start| start - 1),
            after => starts[after - 1],
        }
    }

    /// The number of `id`; 0 is the empty id (a dimension not kept apart), answered
    /// without a lookup.
    fn intern(&mut self, id: &str) -> u32 {
        if id.is_empty() {
            return 0;
        }
        if let Some(&n) = self.ids.get(id) {
            return n;
        }
        let n = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct ids");
        self.names.push(id.into());
        self.ids.insert(id.into(), n);
        n
    }

    /// Adds the packed rows (metric, slot, queue, agent, label, n, total) of one read.
    fn add(&mut self, packed: Option<&str>) -> Result<(), sqlx::Error> {
        let Some(packed) = packed else {
            return Ok(());
        };
        for row in unpacked::<7>(packed) {
            let [code, slot, queue, agent, label, n, total] = row?;
            // A metric this version does not know (written by a newer one) is left out.
            let Some(metric) = Metric::from_code(code) else {
                continue;
            };
            let tally = (packed_number(n)?, packed_number(total)?);
            self.add_one(metric, packed_number(slot)?, [queue, agent, label], tally);
        }
        Ok(())
    }

    /// Adds the packed rows (metric, slot, queue, agent, label, points) of partial slots:
    /// only their points inside the query's range.
    fn add_edges(
        &mut self,
        packed: Option<&str>,
        query: &FactQuery<'_>,
    ) -> Result<(), sqlx::Error> {
        let Some(packed) = packed else {
            return Ok(());
        };
        for row in unpacked::<6>(packed) {
            let [code, slot, queue, agent, label, points] = row?;
            let Some(metric) = Metric::from_code(code) else {
                continue;
            };
            let slot = packed_number(slot)?;
            let tally = points_within(points, slot, query.start, query.end, metric.is_duration())
                .map_err(|err| sqlx::Error::Decode(err.into()))?;
            if tally.0 > 0 {
                self.add_one(metric, slot, [queue, agent, label], tally);
            }
        }
        Ok(())
    }

    fn add_one(
        &mut self,
        metric: Metric,
        slot: i64,
        [queue, agent, label]: [&str; 3],
        (n, total): (i64, i64),
    ) {
        let key = (
            metric,
            self.bucket(slot),
            [self.intern(queue), self.intern(agent), self.intern(label)],
        );
        let sum = self.sums.entry(key).or_default();
        sum.0 += n;
        sum.1 += total;
    }

    /// The sums, in no particular order: every report folds them into its own rows (sorting
    /// them by their ids cost a quarter of a month's report).
    fn into_counts(self) -> Vec<Count> {
        let name = |n: u32| String::from(&*self.names[n as usize]);
        self.sums
            .iter()
            .map(
                |(&(metric, slot, [queue, agent, label]), &(n, total))| Count {
                    metric,
                    slot,
                    queue_id: name(queue),
                    agent_id: name(agent),
                    label: name(label),
                    n,
                    total,
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: i64 = SLOT_MICROS;

    #[test]
    fn only_the_partial_slots_at_the_ends_are_read_with_their_points() {
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
