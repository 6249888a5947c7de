//! Keyset pagination of report rows (AIP-158).
//!
//! A page ends after a row's key and the next page starts after that key, not at an
//! offset: rows that appear between two calls (events keep arriving) are then neither
//! repeated nor skipped on the pages already served, and every row is served once.

/// Where a row sorts in its report: its period (by [`Period::ordinal`]) then its agent.
/// Reports without periods use 0; reports without agents use an empty agent.
///
/// [`Period::ordinal`]: super::period::Period::ordinal
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowKey {
    /// The period's ordinal.
    pub period: i64,
    /// The agent (the queue, in queue rows).
    pub agent_id: String,
}

/// One page of rows, and the key to continue after when more rows follow.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The rows of this page, in report order.
    pub rows: Vec<T>,
    /// The key of the page's last row when more rows follow; `None` on the last page.
    pub next: Option<RowKey>,
}

/// The page of at most `size` rows that follows `after` (from the first row when `None`).
/// `rows` must be sorted by `key` with no two rows sharing a key, as every report is.
pub fn page<T>(
    rows: Vec<T>,
    key: impl Fn(&T) -> RowKey,
    after: Option<&RowKey>,
    size: usize,
) -> Page<T> {
    debug_assert!(rows.windows(2).all(|pair| key(&pair[0]) < key(&pair[1])));
    let size = size.max(1);
    let mut rest = rows
        .into_iter()
        .filter(|row| after.is_none_or(|after| key(row) > *after))
        .peekable();
    let mut page = Vec::with_capacity(size.min(1024));
    while page.len() < size {
        match rest.next() {
            Some(row) => page.push(row),
            None => break,
        }
    }
    let next = match (rest.peek(), page.last()) {
        (Some(_), Some(last)) => Some(key(last)),
        _ => None,
    };
    Page { rows: page, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(row: &(i64, &str)) -> RowKey {
        RowKey {
            period: row.0,
            agent_id: row.1.to_owned(),
        }
    }

    #[test]
    fn pages_cover_every_row_once_and_the_last_has_no_next() {
        let rows = vec![(1, "a"), (1, "b"), (2, "a"), (3, ""), (4, "z")];
        for size in 1..=6 {
            let mut after = None;
            let mut seen = Vec::new();
            loop {
                let page = page(rows.clone(), key, after.as_ref(), size);
                assert!(page.rows.len() <= size);
                seen.extend(page.rows);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, rows, "page size {size}");
        }
    }

    #[test]
    fn a_full_last_page_has_no_next() {
        let rows = vec![(1, "a"), (2, "a")];
        let first = page(rows.clone(), key, None, 2);
        assert_eq!(first.rows.len(), 2);
        assert_eq!(first.next, None);
        let empty: Vec<(i64, &str)> = Vec::new();
        assert_eq!(page(empty, key, None, 3).next, None);
    }

    #[test]
    fn rows_that_appear_before_the_key_do_not_shift_the_next_page() {
        let first = page(vec![(1, "b"), (2, "a"), (3, "a")], key, None, 1);
        assert_eq!(first.rows, vec![(1, "b")]);
        // A row sorting before the key arrived between the calls.
        let second = page(
            vec![(1, "a"), (1, "b"), (2, "a"), (3, "a")],
            key,
            first.next.as_ref(),
            1,
        );
        assert_eq!(second.rows, vec![(2, "a")]);
    }
}
