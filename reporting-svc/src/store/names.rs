//! The numbers rollups are keyed by: every text of a rollup's key (tenant, metric, queue,
//! program, agent, label) is named once in the `names` table, and the rows hold its
//! number (migration 0012). A number, once committed, names the same text for ever, so
//! the service keeps the ones it has seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use sqlx::AssertSqlSafe;
use switchboard_server_kit::{Db, Dialect};

use super::json_in;

/// The number of the empty text: a dimension not known.
pub(super) const EMPTY: i64 = 0;

/// Numbers kept before the cache starts over: a few hundred thousand agents, queues and
/// labels, tens of megabytes at most.
const KEPT: usize = 200_000;

/// The numbers of texts, and the texts of numbers, committed and seen so far.
#[derive(Debug, Default)]
pub(super) struct Names {
    known: RwLock<Known>,
}

#[derive(Debug, Default)]
struct Known {
    numbers: HashMap<Arc<str>, i64>,
    texts: HashMap<i64, Arc<str>>,
}

impl Known {
    fn keep(&mut self, number: i64, text: &str) {
        if self.numbers.len() >= KEPT {
            self.numbers.clear();
            self.texts.clear();
        }
        let text: Arc<str> = text.into();
        self.numbers.insert(text.clone(), number);
        self.texts.insert(number, text);
    }
}

/// Numbers given in a transaction not yet committed: [`Names::remember`] keeps them once it
/// is (a rolled back transaction's numbers name nothing).
#[derive(Debug, Default)]
pub(super) struct Named {
    numbers: HashMap<String, i64>,
    new: Vec<(i64, String)>,
}

impl Named {
    /// The number of `text`, one of the texts named.
    pub(super) fn number(&self, text: &str) -> i64 {
        if text.is_empty() {
            return EMPTY;
        }
        self.numbers[text]
    }
}

impl Names {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.known
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Known> {
        self.known
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Numbers every one of `texts` in `tx`, naming the ones never named (in their order,
    /// so that two transactions naming the same new texts wait for each other rather
    /// than deadlock).
    pub(super) async fn name(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        dialect: Dialect,
        texts: BTreeSet<&str>,
    ) -> Result<Named, sqlx::Error> {
        let mut named = Named::default();
        let mut unknown = Vec::new();
        {
            let known = self.read();
            for text in texts.into_iter().filter(|text| !text.is_empty()) {
                match known.numbers.get(text) {
                    Some(&number) => {
                        named.numbers.insert(text.to_owned(), number);
                    }
                    None => unknown.push(text),
                }
            }
        }
        if unknown.is_empty() {
            return Ok(named);
        }
        let list = serde_json::to_string(&unknown).expect("texts serialize");
        let input = match dialect {
            Dialect::Postgres => "json_array_elements_text(CAST($1 AS JSON)) AS input (value)",
            Dialect::Sqlite => "json_each($1)",
        };
        // Only the texts not yet named reach the insert: on PostgreSQL a conflicting
        // insert would still draw a number from the sequence.
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO names (name) SELECT value FROM {input} \
             WHERE NOT EXISTS (SELECT 1 FROM names WHERE name = value) ORDER BY value \
             ON CONFLICT (name) DO NOTHING"
        )))
        .bind(&list)
        .execute(&mut **tx)
        .await?;
        let rows = look_up(&mut **tx, format!("name {}", json_in(dialect)), list).await?;
        for (number, text) in rows {
            named.numbers.insert(text.clone(), number);
            named.new.push((number, text));
        }
        if let Some(missing) = unknown
            .iter()
            .find(|text| !named.numbers.contains_key(**text))
        {
            return Err(sqlx::Error::Protocol(format!(
                "the name {missing:?} has no number after naming it"
            )));
        }
        Ok(named)
    }

    /// Keeps the numbers of `named`, whose transaction committed.
    pub(super) fn remember(&self, named: Named) {
        if named.new.is_empty() {
            return;
        }
        let mut known = self.write();
        for (number, text) in named.new {
            known.keep(number, &text);
        }
    }

    /// The numbers of those of `texts` that were ever named (a text never named counts
    /// nothing, so it is left out); the empty text is [`EMPTY`].
    pub(super) async fn numbers(
        &self,
        db: &Db,
        texts: &[&str],
    ) -> Result<HashMap<String, i64>, sqlx::Error> {
        let mut found = HashMap::with_capacity(texts.len());
        let mut unknown = Vec::new();
        {
            let known = self.read();
            for &text in texts {
                if text.is_empty() {
                    found.insert(String::new(), EMPTY);
                } else if let Some(&number) = known.numbers.get(text) {
                    found.insert(text.to_owned(), number);
                } else {
                    unknown.push(text);
                }
            }
        }
        if !unknown.is_empty() {
            let unknown = serde_json::to_string(&unknown).expect("texts serialize");
            let condition = format!("name {}", json_in(db.dialect));
            let rows = look_up(&db.pool, condition, unknown).await?;
            let mut known = self.write();
            for (number, text) in rows {
                known.keep(number, &text);
                found.insert(text, number);
            }
        }
        Ok(found)
    }

    /// The texts of `numbers`, every one of which must have been named.
    pub(super) async fn texts(
        &self,
        db: &Db,
        numbers: impl IntoIterator<Item = i64>,
    ) -> Result<HashMap<i64, Arc<str>>, sqlx::Error> {
        let mut found = HashMap::new();
        let mut unknown = BTreeSet::new();
        {
            let known = self.read();
            for number in numbers {
                if number == EMPTY {
                    found.insert(EMPTY, Arc::from(""));
                } else if let Some(text) = known.texts.get(&number) {
                    found.insert(number, text.clone());
                } else {
                    unknown.insert(number);
                }
            }
        }
        if !unknown.is_empty() {
            let wanted = serde_json::to_string(&unknown).expect("numbers serialize");
            let rows = look_up(&db.pool, numbers_in(db.dialect), wanted).await?;
            let mut known = self.write();
            for (number, text) in rows {
                known.keep(number, &text);
                unknown.remove(&number);
                found.insert(number, Arc::from(text));
            }
            if let Some(missing) = unknown.first() {
                return Err(sqlx::Error::Decode(
                    format!("rollups name number {missing}, which names nothing").into(),
                ));
            }
        }
        Ok(found)
    }
}

/// The named rows that meet `condition`, with the JSON array `list` bound as `$1`: read
/// in a writing transaction or on the read pool.
async fn look_up<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    condition: String,
    list: String,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT CAST(id AS BIGINT), name FROM names WHERE {condition}"
    )))
    .bind(list)
    .fetch_all(executor)
    .await
}

/// Is one of the numbers in the JSON array bound as `$1`, answered with the primary key.
fn numbers_in(dialect: Dialect) -> String {
    match dialect {
        Dialect::Postgres => {
            "id = ANY(ARRAY(SELECT CAST(json_array_elements_text(CAST($1 AS JSON)) AS INTEGER)))"
                .to_owned()
        }
        Dialect::Sqlite => "id IN (SELECT value FROM json_each($1))".to_owned(),
    }
}
