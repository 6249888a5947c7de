//! How a CSV export becomes its chunks: whole, for a report computed in memory, or page
//! by page from a snapshot for the large tables (per conversation, the transfer ledger),
//! which a task of their own writes out while the database reads the next page.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use tokio::sync::mpsc;
use tracing::warn;

use crate::domain::csv::{self, CHUNK_BYTES};
use crate::error::Error;

/// Rows a snapshot export reads per statement.
pub(super) const EXPORT_PAGE_ROWS: i64 = 5_000;

/// How long a large export's writer waits for the client to take the next chunk before it
/// gives up, so that a client that stops reading cannot hold an export permit and a
/// database connection for good.
pub(super) const EXPORT_STALL: Duration = Duration::from_secs(60);

/// Chunks a large export writes ahead of its client: about 2 MiB, so that the client never
/// waits for the next page while memory stays bounded whatever the export's size.
const CHUNKS_AHEAD: usize = 32;

/// What an export sends: how many data rows, and the file's chunks (the first starts
/// with the header; each chunk counts the rows so far).
pub(super) struct Export {
    pub(super) total: u64,
    pub(super) chunks: BoxStream<'static, Result<csv::Chunk, Error>>,
}

impl Export {
    /// An export of rows computed whole: a report with a row per period and key.
    pub(super) fn whole(header: &'static [&'static str], rows: Vec<Vec<String>>) -> Export {
        let mut writer = csv::Writer::new(header, CHUNK_BYTES);
        let mut chunks: Vec<csv::Chunk> = rows.iter().filter_map(|r| writer.push(r)).collect();
        chunks.extend(writer.finish());
        Export {
            total: rows.len() as u64,
            chunks: stream::iter(chunks.into_iter().map(Ok)).boxed(),
        }
    }

    /// An export of `total` rows read a page at a time: `read` takes its state (the
    /// snapshot and where the last page ended) and answers the next page and the state
    /// after it, `None` at the end; `write` writes a page's rows into the file and
    /// answers the chunks they completed.
    ///
    /// Three tasks work at once, each on what the one before handed over: a reader asks
    /// the database for the next page as soon as it has handed over the last (so the
    /// database is never kept waiting on the parse or the writing), a writer writes the
    /// pages out, at most [`CHUNKS_AHEAD`] chunks ahead of the client, and the client's
    /// stream sends them. The reader ends, releasing the state (its snapshot's connection,
    /// its permit), once the export ends, its client goes away, or its client has taken
    /// nothing for [`EXPORT_STALL`]; the export then ends short of its total, which
    /// `export_report` reports as ABORTED. A failure is the export's last item.
    pub(super) fn paged<S, P, R, F, W>(
        header: &'static [&'static str],
        total: u64,
        state: S,
        mut read: R,
        mut write: W,
    ) -> Export
    where
        S: Send + 'static,
        P: Send + 'static,
        R: FnMut(S) -> F + Send + 'static,
        F: Future<Output = Result<Option<(P, S)>, Error>> + Send + 'static,
        W: FnMut(&mut csv::Writer, P) -> Result<Vec<csv::Chunk>, Error> + Send + 'static,
    {
        let (page_sender, mut pages) = mpsc::channel::<Result<P, Error>>(1);
        tokio::spawn(async move {
            let mut state = state;
            loop {
                let (page, next) = match read(state).await {
                    Ok(Some(page)) => page,
                    Ok(None) => return,
                    Err(err) => {
                        let _ = page_sender.send(Err(err)).await;
                        return;
                    }
                };
                // Waits while the writer is a page behind; fails once it has stopped.
                if page_sender.send(Ok(page)).await.is_err() {
                    return;
                }
                state = next;
            }
        });
        let (sender, receiver) = mpsc::channel(CHUNKS_AHEAD);
        tokio::spawn(async move {
            let mut writer = csv::Writer::new(header, CHUNK_BYTES);
            while let Some(page) = pages.recv().await {
                let chunks = match page.and_then(|page| write(&mut writer, page)) {
                    Ok(chunks) => chunks,
                    Err(err) => {
                        send(&sender, Err(err)).await;
                        return;
                    }
                };
                for chunk in chunks {
                    if !send(&sender, Ok(chunk)).await {
                        return;
                    }
                }
            }
            if let Some(last) = writer.finish() {
                send(&sender, Ok(last)).await;
            }
        });
        Export {
            total,
            chunks: tokio_stream::wrappers::ReceiverStream::new(receiver).boxed(),
        }
    }
}

/// Hands `item` to the export's client; false when the client went away or took nothing
/// for [`EXPORT_STALL`].
async fn send(
    sender: &mpsc::Sender<Result<csv::Chunk, Error>>,
    item: Result<csv::Chunk, Error>,
) -> bool {
    match tokio::time::timeout(EXPORT_STALL, sender.send(item)).await {
        Ok(sent) => sent.is_ok(),
        Err(_) => {
            warn!("a large export's client took nothing for a minute: stopped");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Sets its flag when dropped: tells that an export's state was let go.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Endless pages of `rows` one-field rows, holding `guard` as an export's state holds
    /// its snapshot.
    fn endless(guard: Dropped, rows: usize) -> Export {
        Export::paged(
            &["row"],
            u64::MAX,
            guard,
            move |guard| async move { Ok(Some((vec!["row"; rows], guard))) },
            |writer, page| Ok(page.iter().filter_map(|row| writer.push(&[*row])).collect()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_releases_the_export_s_state() {
        let released = Arc::new(AtomicBool::new(false));
        let mut export = endless(Dropped(released.clone()), 10_000);
        assert!(
            export.chunks.next().await.is_some(),
            "chunks flow while taken"
        );
        // Taken no more: once the stall limit passes, the state is dropped.
        tokio::time::sleep(EXPORT_STALL - Duration::from_secs(1)).await;
        assert!(!released.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(released.load(Ordering::SeqCst));
        // What was written ahead is still there, then the stream ends.
        let mut rest = 0;
        while export.chunks.next().await.is_some() {
            rest += 1;
        }
        // The chunks waiting to be sent, then those of the page being written.
        assert!(
            rest <= CHUNKS_AHEAD + 10_000 * 5 / CHUNK_BYTES + 2,
            "{rest}"
        );
    }

    #[tokio::test]
    async fn a_client_that_goes_away_releases_the_export_s_state() {
        let released = Arc::new(AtomicBool::new(false));
        let mut export = endless(Dropped(released.clone()), 100);
        assert!(export.chunks.next().await.is_some());
        drop(export);
        tokio::time::timeout(Duration::from_secs(10), async {
            while !released.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the state is dropped once the client is gone");
    }

    #[tokio::test]
    async fn pages_are_written_in_order_and_a_failed_read_ends_the_export() {
        let export = Export::paged(
            &["n"],
            5,
            0_i64,
            |next| async move {
                match next {
                    0..=3 => Ok(Some((vec![next, next + 1], next + 2))),
                    _ => Err(Error::invalid("page", "gone")),
                }
            },
            |writer, page: Vec<i64>| {
                Ok(page
                    .iter()
                    .filter_map(|n| writer.push(&[n.to_string()]))
                    .collect())
            },
        );
        let items: Vec<_> = export.chunks.collect().await;
        let (last, chunks) = items.split_last().unwrap();
        assert!(
            matches!(last, Err(Error::InvalidArgument { .. })),
            "{last:?}"
        );
        let text: String = chunks
            .iter()
            .map(|c| String::from_utf8(c.as_ref().unwrap().bytes.clone()).unwrap())
            .collect();
        // The rows read before the failure that filled no chunk are not sent.
        assert!(
            text.is_empty() || text.starts_with("n\r\n0\r\n1\r\n"),
            "{text:?}"
        );
    }
}
