//! Conversations' facts during a run of conversation events: every conversation the run
//! names is read in one statement, the run is folded in memory, and each changed
//! conversation is written back once, with the run's assignments, in two statements. A
//! consumer catching up applies a thousand events with a handful of statements instead of
//! two or three per event.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use sqlx::AssertSqlSafe;
use switchboard_server_kit::Dialect;

use super::{Column, FACT_COLUMNS, execute_json_rows, facts_from_row, json_in, json_rows};
use crate::domain::facts::{self, AssignmentFact, ConversationFacts, Event};
use crate::domain::metrics::{Occurrence, of_conversation_event};

/// The facts a run of events reads and changes.
#[derive(Debug, Default)]
pub(super) struct ConversationRun {
    /// Every conversation the run names, as stored before the run and folded since;
    /// `None` while never seen.
    facts: HashMap<String, Option<ConversationFacts>>,
    /// The conversations the run changed, with the log sequence of their last change.
    changed: HashMap<String, i64>,
    /// The run's assignments, in order.
    assignments: Vec<AssignmentFact>,
    /// Every (tenant, queue, program) a conversation of the run was in.
    queue_programs: HashSet<(String, String, String)>,
}

impl ConversationRun {
    /// The facts of every conversation in `ids`: as `previous` (the run before, which may
    /// not be written yet) left them when it named them, otherwise as stored.
    pub(super) async fn load<'a>(
        conn: &mut sqlx::AnyConnection,
        dialect: Dialect,
        ids: impl Iterator<Item = &'a str>,
        previous: Option<&ConversationRun>,
    ) -> Result<ConversationRun, sqlx::Error> {
        let mut facts: HashMap<String, Option<ConversationFacts>> = HashMap::new();
        let mut stored: Vec<&str> = Vec::new();
        for id in ids {
            if facts.contains_key(id) {
                continue;
            }
            let folded = previous.and_then(|run| run.facts.get(id));
            if folded.is_none() {
                stored.push(id);
            }
            facts.insert(id.to_owned(), folded.cloned().flatten());
        }
        if !stored.is_empty() {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {FACT_COLUMNS} FROM conversation_facts WHERE conversation_id {}",
                json_in(dialect)
            )))
            .bind(serde_json::Value::from(stored).to_string())
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let stored = facts_from_row(&row)?;
                facts.insert(stored.conversation_id.clone(), Some(stored));
            }
        }
        Ok(ConversationRun {
            facts,
            ..ConversationRun::default()
        })
    }

    /// Folds `event`, the log's entry `log_sequence`, into its conversation's facts,
    /// adding what it counts to `occurrences`.
    pub(super) fn fold(
        &mut self,
        log_sequence: i64,
        event: &Event,
        occurrences: &mut Vec<Occurrence>,
    ) {
        let current = self.facts.entry(event.conversation_id.clone()).or_default();
        let change = facts::apply(current.as_ref(), event);
        if let Some(assignment) = change.assignment {
            self.assignments.push(assignment);
        }
        if let Some(after) = change.conversation {
            occurrences.extend(of_conversation_event(event, &after));
            if !after.queue_id.is_empty() && !after.program_id.is_empty() {
                self.queue_programs.insert((
                    after.tenant_id.clone(),
                    after.queue_id.clone(),
                    after.program_id.clone(),
                ));
            }
            self.changed
                .insert(event.conversation_id.clone(), log_sequence);
            *current = Some(after);
        } else if let Some(after) = current.as_ref() {
            occurrences.extend(of_conversation_event(event, after));
        }
    }

    /// Writes back every conversation the run changed, and the run's assignments.
    pub(super) async fn save(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        dialect: Dialect,
    ) -> Result<(), sqlx::Error> {
        let changed: Vec<(&ConversationFacts, i64)> = self
            .changed
            .iter()
            .filter_map(|(id, &sequence)| {
                self.facts
                    .get(id)
                    .and_then(Option::as_ref)
                    .map(|facts| (facts, sequence))
            })
            .collect();
        use Column::{Int, Text};
        if !changed.is_empty() {
            let rows: Vec<serde_json::Value> = changed
                .iter()
                .map(|(f, sequence)| {
                    json!([
                        f.conversation_id,
                        f.tenant_id,
                        f.channel,
                        f.queue_id,
                        f.program_id,
                        f.created_at,
                        f.closed_at,
                        f.closing_agent_id,
                        f.closing_segment_start,
                        f.owner_agent_id,
                        f.owner_since,
                        f.segments,
                        f.transfers,
                        f.reopens,
                        f.status_label_id,
                        sequence
                    ])
                })
                .collect();
            execute_json_rows(
                tx,
                format!(
                    "INSERT INTO conversation_facts (conversation_id, tenant_id, channel, \
                 queue_id, program_id, created_at, closed_at, closing_agent_id, \
                 closing_segment_start, owner_agent_id, owner_since, segments, transfers, \
                 reopens, status_label_id, last_log_sequence) {} \
                 ON CONFLICT (conversation_id) DO UPDATE SET \
                 channel = excluded.channel, queue_id = excluded.queue_id, \
                 program_id = excluded.program_id, created_at = excluded.created_at, \
                 closed_at = excluded.closed_at, closing_agent_id = excluded.closing_agent_id, \
                 closing_segment_start = excluded.closing_segment_start, \
                 owner_agent_id = excluded.owner_agent_id, owner_since = excluded.owner_since, \
                 segments = excluded.segments, transfers = excluded.transfers, \
                 reopens = excluded.reopens, status_label_id = excluded.status_label_id, \
                 last_log_sequence = excluded.last_log_sequence",
                    json_rows(
                        dialect,
                        &[
                            Text, Text, Int, Text, Text, Int, Int, Text, Int, Text, Int, Int, Int,
                            Int, Text, Int
                        ]
                    )
                ),
                rows,
            )
            .await?;
        }
        if !self.assignments.is_empty() {
            let rows: Vec<serde_json::Value> = self
                .assignments
                .iter()
                .map(|a| {
                    json!([
                        a.log_sequence,
                        a.tenant_id,
                        a.conversation_id,
                        a.agent_id,
                        a.previous_agent_id,
                        a.queue_id,
                        a.channel,
                        a.assigned_at,
                        i64::from(a.reassignment)
                    ])
                })
                .collect();
            execute_json_rows(
                tx,
                format!(
                    "INSERT INTO assignment_facts (log_sequence, tenant_id, conversation_id, \
                 agent_id, previous_agent_id, queue_id, channel, assigned_at, reassignment) {}",
                    json_rows(dialect, &[Int, Text, Text, Text, Text, Text, Int, Int, Int])
                ),
                rows,
            )
            .await?;
        }
        if !self.queue_programs.is_empty() {
            let rows: Vec<serde_json::Value> = self
                .queue_programs
                .iter()
                .map(|(tenant, queue, program)| json!([tenant, queue, program]))
                .collect();
            execute_json_rows(
                tx,
                format!(
                    "INSERT INTO queue_programs (tenant_id, queue_id, program_id) {} \
                     ON CONFLICT (tenant_id, queue_id) DO NOTHING",
                    json_rows(dialect, &[Text, Text, Text])
                ),
                rows,
            )
            .await?;
        }
        Ok(())
    }
}
