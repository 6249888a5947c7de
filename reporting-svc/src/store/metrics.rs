//! Occurrences and their quarter-hour rollups: written with the events they come from,
//! read by every period report.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;
use switchboard_server_kit::Dialect;

use super::names::{Named, Names};
use super::{
    Bind, Column, FactQuery, Sql, Store, execute_json_rows, json_rows, packed_aggregate,
    packed_number, packed_text, unpacked,
};
use crate::domain::metrics::{Count, Metric, Occurrence, points_within, rollup};
use crate::domain::reports::SLOT_MICROS;

/// Adds `occurrences` to the rollups, with their points, in the caller's transaction: the
/// texts of their keys are numbered first (one statement, two when some are new), then
/// one statement. The numbers given are kept once the caller's transaction commits
/// ([`Names::remember`]).
pub(super) async fn record(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    dialect: Dialect,
    names: &Names,
    occurrences: &[Occurrence],
) -> Result<Named, sqlx::Error> {
    if occurrences.is_empty() {
        return Ok(Named::default());
    }
    use Column::{Int, Text};
    // Summed first, so that each key appears once in the statement (PostgreSQL refuses to
    // update one row twice in one INSERT ... ON CONFLICT).
    let sums = rollup(occurrences);
    let texts: BTreeSet<&str> = sums
        .keys()
        .flat_map(|key| {
            [
                key.tenant_id.as_str(),
                key.metric.code(),
                &key.queue_id,
                &key.program_id,
                &key.agent_id,
                &key.label,
            ]
        })
        .collect();
    let named = names.name(tx, dialect, texts).await?;
    let rows: Vec<serde_json::Value> = sums
        .iter()
        .map(|(key, tally)| {
            json!([
                named.number(&key.tenant_id),
                named.number(key.metric.code()),
                key.slot,
                named.number(&key.queue_id),
                key.channel,
                named.number(&key.program_id),
                named.number(&key.agent_id),
                named.number(&key.label),
                tally.n,
                tally.total,
                tally.points
            ])
        })
        .collect();
    execute_json_rows(
        tx,
        format!(
            "INSERT INTO rollups (tenant, metric, slot, queue, channel, program, agent, label, \
             n, total, points) {} \
             ON CONFLICT (tenant, metric, slot, queue, channel, program, agent, label) \
             DO UPDATE SET n = rollups.n + excluded.n, total = rollups.total + excluded.total, \
             points = rollups.points || excluded.points",
            json_rows(
                dialect,
                &[Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Text]
            )
        ),
        rows,
    )
    .await?;
    Ok(named)
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
    /// per statement, so that a year's report holds a week of rows at a time, not the year,
    /// and by number (`names`): their texts are looked up once, for the sums.
    pub async fn metric_counts(
        &self,
        query: &FactQuery<'_>,
        metrics: &[Metric],
        group: GroupBy<'_>,
    ) -> Result<Vec<Count>, sqlx::Error> {
        let Some(numbers) = self.query_numbers(query, metrics).await? else {
            return Ok(Vec::new());
        };
        let dialect = self.db.dialect;
        let first_full = query.start.div_euclid(SLOT_MICROS)
            + i64::from(query.start.rem_euclid(SLOT_MICROS) != 0);
        let end_full = query.end.div_euclid(SLOT_MICROS);
        // The dimensions kept apart, and what the others read as (the empty text).
        let kept = |keep: bool, column: &'static str| if keep { column } else { "0" };
        let (queue, agent, label) = (
            kept(group.queue, "queue"),
            kept(group.agent, "agent"),
            kept(group.label, "label"),
        );
        let select = |columns: &[&str], numbers: &QueryNumbers| {
            let packed = packed_aggregate(dialect, columns);
            let mut sql = Sql::new(
                dialect,
                &format!("SELECT {packed} AS counts FROM rollups WHERE tenant = "),
            );
            sql.bind(Bind::Int(numbers.tenant)).and_in(
                "metric",
                numbers.metrics.keys().map(|&number| Bind::Int(number)),
            );
            sql
        };
        let mut reads = Vec::new();
        let mut from = first_full;
        while from < end_full {
            let to = from.saturating_add(SLOTS_PER_READ).min(end_full);
            let mut sql = select(
                &["metric", "slot", queue, agent, label, "n", "total"],
                &numbers,
            );
            sql.push(" AND slot >= ")
                .bind(Bind::Int(from))
                .push(" AND slot < ")
                .bind(Bind::Int(to));
            numbers.filters(&mut sql, query);
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
            let mut sql = select(&["metric", "slot", queue, agent, label, "points"], &numbers);
            sql.and_in("slot", edge_slots.iter().map(|&slot| Bind::Int(slot)));
            numbers.filters(&mut sql, query);
            sql
        });

        // Each read's rows are summed while the database answers the next ones
        // (READS_AHEAD).
        let mut sums = Sums::new(
            query.start.div_euclid(SLOT_MICROS),
            group.buckets,
            &numbers.metrics,
        );
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
        let texts = self.names.texts(&self.db, sums.numbers()).await?;
        Ok(sums.into_counts(&texts))
    }

    /// The numbers of the query's tenant, metrics and filters; none when it can count
    /// nothing (a tenant, every metric, or every queue or agent filtered on never named).
    async fn query_numbers(
        &self,
        query: &FactQuery<'_>,
        metrics: &[Metric],
    ) -> Result<Option<QueryNumbers>, sqlx::Error> {
        let texts: Vec<&str> = std::iter::once(query.tenant_id)
            .chain(metrics.iter().map(|metric| metric.code()))
            .chain(query.queue_ids.iter().map(String::as_str))
            .chain(query.agent_ids.iter().map(String::as_str))
            .collect();
        let numbers = self.names.numbers(&self.db, &texts).await?;
        let of = |texts: &[String]| -> Vec<i64> {
            texts
                .iter()
                .filter_map(|text| numbers.get(text.as_str()).copied())
                .collect()
        };
        let (queues, agents) = (of(query.queue_ids), of(query.agent_ids));
        let metrics: HashMap<i64, Metric> = metrics
            .iter()
            .filter_map(|&metric| Some((*numbers.get(metric.code())?, metric)))
            .collect();
        let Some(&tenant) = numbers.get(query.tenant_id) else {
            return Ok(None);
        };
        if metrics.is_empty()
            || (queues.is_empty() && !query.queue_ids.is_empty())
            || (agents.is_empty() && !query.agent_ids.is_empty())
        {
            return Ok(None);
        }
        Ok(Some(QueryNumbers {
            tenant,
            metrics,
            queues,
            agents,
        }))
    }
}

/// The numbers a rollup read selects by.
struct QueryNumbers {
    tenant: i64,
    metrics: HashMap<i64, Metric>,
    queues: Vec<i64>,
    agents: Vec<i64>,
}

impl QueryNumbers {
    /// The queue, channel and agent filters.
    fn filters(&self, sql: &mut Sql, query: &FactQuery<'_>) {
        sql.and_in("queue", self.queues.iter().map(|&n| Bind::Int(n)))
            .and_in(
                "channel",
                query.channels.iter().map(|&c| Bind::Int(i64::from(c))),
            )
            .and_in("agent", self.agents.iter().map(|&n| Bind::Int(n)));
    }
}

/// Slots of rollups read per statement: a week.
const SLOTS_PER_READ: i64 = 7 * 96;

/// Reads of one report in flight at once, each on its own connection: while one is
/// summed, the database answers the others (on PostgreSQL, each on its own core). A month
/// of a busy tenant by day went from 38 to 28 ms (p50) on PostgreSQL, 24 to 21 on SQLite,
/// against reading one at a time.
const READS_AHEAD: usize = 3;

/// Counts summed per metric, bucket and the numbers of the dimensions kept apart, as the
/// rows of [`Store::metric_counts`] arrive: keyed by integers, where hashing and owning the
/// 36-character ids per row was most of a month's report.
struct Sums<'a> {
    /// The bucket of every slot when `starts` is empty: the range's first slot.
    first: i64,
    starts: Option<&'a [i64]>,
    metrics: &'a HashMap<i64, Metric>,
    sums: foldhash::HashMap<(Metric, i64, [i64; 3]), (i64, i64)>,
}

impl<'a> Sums<'a> {
    fn new(first: i64, starts: Option<&'a [i64]>, metrics: &'a HashMap<i64, Metric>) -> Sums<'a> {
        Sums {
            first,
            starts,
            metrics,
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

    /// The metric numbered `number`: one of those read.
    fn metric(&self, number: &str) -> Result<Metric, sqlx::Error> {
        let number = packed_number(number)?;
        self.metrics.get(&number).copied().ok_or_else(|| {
            sqlx::Error::Decode(format!("a rollup of metric {number}, which was not read").into())
        })
    }

    /// Adds the packed rows (metric, slot, queue, agent, label, n, total) of one read.
    fn add(&mut self, packed: Option<&str>) -> Result<(), sqlx::Error> {
        let Some(packed) = packed else {
            return Ok(());
        };
        for row in unpacked::<7>(packed) {
            let [metric, slot, queue, agent, label, n, total] = row?;
            let tally = (packed_number(n)?, packed_number(total)?);
            let dimensions = [
                packed_number(queue)?,
                packed_number(agent)?,
                packed_number(label)?,
            ];
            self.add_one(
                self.metric(metric)?,
                packed_number(slot)?,
                dimensions,
                tally,
            );
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
            let [metric, slot, queue, agent, label, points] = row?;
            let metric = self.metric(metric)?;
            let slot = packed_number(slot)?;
            let tally = points_within(points, slot, query.start, query.end, metric.is_duration())
                .map_err(|err| sqlx::Error::Decode(err.into()))?;
            if tally.0 > 0 {
                let dimensions = [
                    packed_number(queue)?,
                    packed_number(agent)?,
                    packed_number(label)?,
                ];
                self.add_one(metric, slot, dimensions, tally);
            }
        }
        Ok(())
    }

    fn add_one(&mut self, metric: Metric, slot: i64, dimensions: [i64; 3], (n, total): (i64, i64)) {
        let sum = self
            .sums
            .entry((metric, self.bucket(slot), dimensions))
            .or_default();
        sum.0 += n;
        sum.1 += total;
    }

    /// The numbers of the dimensions summed, each once.
    fn numbers(&self) -> BTreeSet<i64> {
        self.sums
            .keys()
            .flat_map(|(_, _, dimensions)| *dimensions)
            .collect()
    }

    /// The sums, in no particular order, with the texts of their numbers: every report
    /// folds them into its own rows (sorting them by their ids cost a quarter of a month's
    /// report).
    fn into_counts(self, texts: &HashMap<i64, Arc<str>>) -> Vec<Count> {
        let text = |number: i64| String::from(texts.get(&number).map_or("", |text| &**text));
        self.sums
            .iter()
            .map(
                |(&(metric, slot, [queue, agent, label]), &(n, total))| Count {
                    metric,
                    slot,
                    queue_id: text(queue),
                    agent_id: text(agent),
                    label: text(label),
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
