//! Server streams fed from the event log: the internal Subscribe and agents' offers.
//!
//! Both read the events table after a cursor, so they see changes made by any replica.
//! A commit in this process wakes them at once; changes from another replica are picked
//! up by polling.

use std::collections::HashMap;
use std::time::Duration;

use switchboard_proto::routing::internal::v1::SubscribeResponse;
use switchboard_proto::routing::v1::StreamOffersResponse;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::warn;

use crate::api::convert;
use crate::domain::OfferState;
use crate::error::Result;
use crate::store::{Store, events, routing};

/// Events read per query.
const EVENT_BATCH: i64 = 500;
/// Messages buffered per stream before the reader waits for the client.
const STREAM_BUFFER: usize = 64;

/// Why a follow loop stops.
enum Stop {
    /// The client went away or the server shuts down.
    Done,
    /// Reading failed; the client gets UNAVAILABLE and reconnects.
    Failed(crate::error::Error),
}

/// Waits until something may have been committed: a local commit, the poll interval,
/// or a reason to stop.
async fn wait_for_commit<T>(
    commits: &mut watch::Receiver<i64>,
    poll: Duration,
    shutdown: &CancellationToken,
    sender: &mpsc::Sender<T>,
) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = sender.closed() => false,
        changed = commits.changed() => {
            if changed.is_err() {
                // The store is gone; fall back to polling.
                tokio::time::sleep(poll).await;
            }
            true
        }
        () = tokio::time::sleep(poll) => true,
    }
}

/// Streams every event after `after_sequence`, then new ones as they commit.
pub fn subscribe(
    store: Store,
    after_sequence: i64,
    poll: Duration,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<SubscribeResponse, Status>> {
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut commits = store.commits();
        let mut cursor = after_sequence;
        let stop = loop {
            commits.borrow_and_update();
            let batch = match read_events(&store, cursor).await {
                Ok(batch) => batch,
                Err(err) => break Stop::Failed(err),
            };
            if batch.is_empty() {
                if !wait_for_commit(&mut commits, poll, &shutdown, &sender).await {
                    break Stop::Done;
                }
                continue;
            }
            let mut gone = false;
            for event in &batch {
                cursor = event.sequence;
                if sender.send(Ok(convert::event(event))).await.is_err() {
                    gone = true;
                    break;
                }
            }
            if gone || shutdown.is_cancelled() {
                break Stop::Done;
            }
        };
        finish(stop, &sender).await;
    });
    ReceiverStream::new(receiver)
}

async fn read_events(store: &Store, cursor: i64) -> Result<Vec<events::Event>> {
    let mut conn = store.conn().await?;
    events::after(&mut conn, cursor, EVENT_BATCH).await
}

async fn finish<T>(stop: Stop, sender: &mpsc::Sender<Result<T, Status>>) {
    if let Stop::Failed(err) = stop {
        warn!(error = %err, "event stream failed");
        let _ = sender
            .send(Err(Status::unavailable(
                "event stream interrupted; reconnect",
            )))
            .await;
    }
}

/// Streams an agent's offers: first those pending, then every new offer and every
/// resolution of the agent's offers, each as the offer now stands.
pub fn offers(
    store: Store,
    tenant_id: String,
    agent_id: String,
    poll: Duration,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<StreamOffersResponse, Status>> {
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let stop = follow_offers(&store, &tenant_id, &agent_id, poll, &shutdown, &sender).await;
        finish(stop, &sender).await;
    });
    ReceiverStream::new(receiver)
}

async fn follow_offers(
    store: &Store,
    tenant_id: &str,
    agent_id: &str,
    poll: Duration,
    shutdown: &CancellationToken,
    sender: &mpsc::Sender<Result<StreamOffersResponse, Status>>,
) -> Stop {
    let mut commits = store.commits();
    commits.borrow_and_update();
    // Offers sent and the state they were sent in; an offer leaves the map once its
    // resolution event is seen, as nothing follows that.
    let mut sent: HashMap<String, OfferState> = HashMap::new();
    let start = async {
        let mut conn = store.conn().await?;
        let cursor = events::last_sequence(&mut conn).await?;
        let pending = routing::pending_offers_of_agent(&mut conn, tenant_id, agent_id).await?;
        Ok::<_, crate::error::Error>((cursor, pending))
    };
    let (mut cursor, pending) = match start.await {
        Ok(start) => start,
        Err(err) => return Stop::Failed(err),
    };
    for offer in pending {
        sent.insert(offer.id.clone(), offer.state);
        let message = StreamOffersResponse {
            offer: Some(convert::offer(&offer)),
        };
        if sender.send(Ok(message)).await.is_err() {
            return Stop::Done;
        }
    }
    loop {
        commits.borrow_and_update();
        let batch = async {
            let mut conn = store.conn().await?;
            let events = events::agent_after(
                &mut conn,
                tenant_id,
                agent_id,
                "offer.",
                cursor,
                EVENT_BATCH,
            )
            .await?;
            let mut offers = Vec::with_capacity(events.len());
            for event in events {
                let offer = routing::get_offer(&mut conn, tenant_id, &event.offer_id).await?;
                offers.push((event, offer));
            }
            Ok::<_, crate::error::Error>(offers)
        };
        let batch = match batch.await {
            Ok(batch) => batch,
            Err(err) => return Stop::Failed(err),
        };
        if batch.is_empty() {
            if !wait_for_commit(&mut commits, poll, shutdown, sender).await {
                return Stop::Done;
            }
            continue;
        }
        for (event, offer) in batch {
            cursor = event.sequence;
            let Some(offer) = offer else { continue };
            let resolution = event.kind != "offer.created";
            let already = sent.get(&offer.id) == Some(&offer.state);
            if resolution {
                sent.remove(&offer.id);
            } else {
                sent.insert(offer.id.clone(), offer.state);
            }
            if already {
                continue;
            }
            let message = StreamOffersResponse {
                offer: Some(convert::offer(&offer)),
            };
            if sender.send(Ok(message)).await.is_err() {
                return Stop::Done;
            }
        }
        if shutdown.is_cancelled() {
            return Stop::Done;
        }
    }
}
