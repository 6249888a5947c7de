//! Server streams fed from the event log: the internal Subscribe, an agent's offers and
//! state (StreamOffers), and the supervisors' agent states (StreamAgentStates).
//!
//! All read the events table after a cursor, so they see changes made by any replica.
//! Each watches its topics (the whole log, a tenant, an agent) in the store's change
//! notices: a commit wakes only the streams it concerns, at once when this process
//! committed it, within the follower's poll interval when another replica did; an idle
//! stream reads nothing. Each sends a heartbeat when it sent nothing for the heartbeat
//! interval.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use sqlx::AnyConnection;
use switchboard_proto::routing::internal::v1::{SubscribeResponse, subscribe_response};
use switchboard_proto::routing::v1::{
    self as pb, StreamAgentStatesResponse, StreamOffersResponse, stream_agent_states_response,
    stream_offers_response,
};
use switchboard_server_kit::changes::Watch;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::warn;

use crate::convert;
use crate::directory::Directory;
use crate::domain::{Agent, OfferState};
use crate::error::Result;
use crate::store::{Store, Topic, catalog, events, routing};

/// Events read per query.
const EVENT_BATCH: i64 = 500;
/// Messages buffered per stream before the reader waits for the client.
const STREAM_BUFFER: usize = 64;

/// How long a stream may stay quiet.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Quiet time after which a heartbeat is sent.
    pub heartbeat: Duration,
    /// How often a stream filtered by team asks the directory who is in it.
    pub team_refresh: Duration,
}

/// Why a follow loop stops.
enum Stop {
    /// The client went away or the server shuts down.
    Done,
    /// Reading failed; the client gets UNAVAILABLE and reconnects.
    Failed(crate::error::Error),
}

impl From<crate::error::Error> for Stop {
    fn from(err: crate::error::Error) -> Stop {
        Stop::Failed(err)
    }
}

/// The sending half of a stream; remembers when it last sent, for heartbeats.
struct Sink<T> {
    sender: mpsc::Sender<Result<T, Status>>,
    last_sent: Instant,
    pace: Pace,
    heartbeat: fn() -> T,
}

impl<T> Sink<T> {
    fn new(sender: mpsc::Sender<Result<T, Status>>, pace: Pace, heartbeat: fn() -> T) -> Self {
        Sink {
            sender,
            last_sent: Instant::now(),
            pace,
            heartbeat,
        }
    }

    /// Sends `message`; `Err(Stop::Done)` when the client is gone.
    async fn send(&mut self, message: T) -> Result<(), Stop> {
        self.last_sent = Instant::now();
        self.sender.send(Ok(message)).await.map_err(|_| Stop::Done)
    }

    /// Sends a heartbeat if the stream was quiet for the interval, else waits until a
    /// change of the watched topics was published or the heartbeat falls due.
    /// `Err(Stop::Done)` when the stream should end.
    async fn idle(
        &mut self,
        watch: &Watch<Topic>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        self.idle_until(watch, shutdown, None).await
    }

    /// [`Sink::idle`], waking at `wake` at the latest.
    async fn idle_until(
        &mut self,
        watch: &Watch<Topic>,
        shutdown: &CancellationToken,
        wake: Option<Instant>,
    ) -> Result<(), Stop> {
        let beat_in = self.pace.heartbeat.saturating_sub(self.last_sent.elapsed());
        if beat_in.is_zero() {
            return self.send((self.heartbeat)()).await;
        }
        let sleep = wake.map_or(beat_in, |wake| {
            beat_in.min(wake.saturating_duration_since(Instant::now()))
        });
        tokio::select! {
            () = shutdown.cancelled() => Err(Stop::Done),
            () = self.sender.closed() => Err(Stop::Done),
            () = watch.changed() => Ok(()),
            () = tokio::time::sleep(sleep) => Ok(()),
        }
    }

    /// Ends the stream: a failure reaches the client as UNAVAILABLE.
    async fn finish(self, stop: Stop) {
        if let Stop::Failed(err) = stop {
            warn!(error = %err, "event stream failed");
            let _ = self
                .sender
                .send(Err(Status::unavailable(
                    "event stream interrupted; reconnect",
                )))
                .await;
        }
    }
}

/// Runs `follow` on a new task feeding the returned stream.
fn spawn_stream<T, F, Fut>(
    pace: Pace,
    heartbeat: fn() -> T,
    follow: F,
) -> ReceiverStream<Result<T, Status>>
where
    T: Send + 'static,
    F: FnOnce(Sink<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(follow(Sink::new(sender, pace, heartbeat)));
    ReceiverStream::new(receiver)
}

// --- internal Subscribe -----------------------------------------------------------------

fn subscribe_heartbeat() -> SubscribeResponse {
    SubscribeResponse {
        update: Some(subscribe_response::Update::Heartbeat(convert::heartbeat())),
    }
}

/// Streams every event after `after_sequence`, then `caught_up` once every event
/// committed when the stream started was sent, then new ones as they commit.
pub fn subscribe(
    store: Store,
    after_sequence: i64,
    pace: Pace,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<SubscribeResponse, Status>> {
    spawn_stream(pace, subscribe_heartbeat, move |mut sink| async move {
        let stop = follow_log(&store, after_sequence, &shutdown, &mut sink).await;
        let Err(stop) = stop;
        sink.finish(stop).await;
    })
}

async fn follow_log(
    store: &Store,
    after_sequence: i64,
    shutdown: &CancellationToken,
    sink: &mut Sink<SubscribeResponse>,
) -> Result<Infallible, Stop> {
    let watch = store.changes().watch([Topic::Log]);
    let backlog_end = {
        let mut conn = store.conn().await?;
        events::last_sequence(&mut conn).await?
    };
    let mut cursor = after_sequence;
    let mut caught_up = false;
    loop {
        let batch = {
            let mut conn = store.conn().await?;
            events::after(&mut conn, cursor, EVENT_BATCH).await?
        };
        for event in &batch {
            cursor = event.sequence;
            sink.send(convert::event(event)).await?;
        }
        if !caught_up && (cursor >= backlog_end || batch.is_empty()) {
            caught_up = true;
            sink.send(SubscribeResponse {
                update: Some(subscribe_response::Update::CaughtUp(convert::snapshot_end())),
            })
            .await?;
        }
        if shutdown.is_cancelled() {
            return Err(Stop::Done);
        }
        if batch.is_empty() {
            sink.idle(&watch, shutdown).await?;
        }
    }
}

// --- StreamOffers -----------------------------------------------------------------------

fn offers_message(update: stream_offers_response::Update) -> StreamOffersResponse {
    StreamOffersResponse {
        update: Some(update),
    }
}

fn offers_heartbeat() -> StreamOffersResponse {
    offers_message(stream_offers_response::Update::Heartbeat(
        convert::heartbeat(),
    ))
}

/// The agent's state now, if it still has a profile.
async fn current_state(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
) -> Result<Option<pb::AgentState>> {
    Ok(catalog::agent_with_load(conn, tenant_id, agent_id)
        .await?
        .map(|(agent, open, pending)| convert::agent_state(&agent, open, pending)))
}

/// The agent desktop's stream: the agent's state, its pending offers and `snapshot_end`,
/// then every new offer and resolution, and the agent's state whenever it changes.
///
/// The snapshot is read before the call returns, so a change the caller makes once the
/// stream is open (going Available, say) is always delivered as a change after it.
pub async fn offers(
    store: Store,
    tenant_id: String,
    agent_id: String,
    pace: Pace,
    shutdown: CancellationToken,
) -> Result<ReceiverStream<Result<StreamOffersResponse, Status>>> {
    let watch = store.changes().watch([Topic::Agent {
        tenant_id: tenant_id.clone(),
        agent_id: agent_id.clone(),
    }]);
    // The cursor is read first: a change committed while the snapshot is read is both in
    // the snapshot and replayed, and the replay is recognised as already sent.
    let snapshot = {
        let mut conn = store.conn().await?;
        let cursor = events::last_sequence(&mut conn).await?;
        let state = current_state(&mut conn, &tenant_id, &agent_id).await?;
        let pending = routing::pending_offers_of_agent(&mut conn, &tenant_id, &agent_id).await?;
        (cursor, state, pending)
    };
    Ok(spawn_stream(
        pace,
        offers_heartbeat,
        move |mut sink| async move {
            let stop = follow_offers(
                &store, &tenant_id, &agent_id, watch, snapshot, &shutdown, &mut sink,
            )
            .await;
            let Err(stop) = stop;
            sink.finish(stop).await;
        },
    ))
}

/// What an offer stream opens with: the event cursor, the agent's state and its pending
/// offers.
type OffersSnapshot = (i64, Option<pb::AgentState>, Vec<crate::domain::Offer>);

async fn follow_offers(
    store: &Store,
    tenant_id: &str,
    agent_id: &str,
    watch: Watch<Topic>,
    snapshot: OffersSnapshot,
    shutdown: &CancellationToken,
    sink: &mut Sink<StreamOffersResponse>,
) -> Result<Infallible, Stop> {
    let (mut cursor, state, pending) = snapshot;
    let mut last_state = state;
    if let Some(state) = &last_state {
        sink.send(offers_message(stream_offers_response::Update::AgentState(
            state.clone(),
        )))
        .await?;
    }
    // Offers sent and the state they were sent in; an offer leaves the map once its
    // resolution event is seen, as nothing follows that.
    let mut sent: HashMap<String, OfferState> = HashMap::new();
    for offer in pending {
        sent.insert(offer.id.clone(), offer.state);
        sink.send(offers_message(stream_offers_response::Update::Offer(
            convert::offer(&offer),
        )))
        .await?;
    }
    sink.send(offers_message(stream_offers_response::Update::SnapshotEnd(
        convert::snapshot_end(),
    )))
    .await?;
    loop {
        let (batch, state) = {
            let mut conn = store.conn().await?;
            let events =
                events::agent_after(&mut conn, tenant_id, agent_id, "", cursor, EVENT_BATCH)
                    .await?;
            let mut offers = Vec::with_capacity(events.len());
            for event in events {
                let offer = if event.kind.starts_with("offer.") {
                    routing::get_offer(&mut conn, tenant_id, &event.offer_id).await?
                } else {
                    None
                };
                offers.push((event, offer));
            }
            // Read after the events, so the state is at least as new as they are.
            let state = if offers.is_empty() {
                None
            } else {
                current_state(&mut conn, tenant_id, agent_id).await?
            };
            (offers, state)
        };
        let quiet = batch.is_empty();
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
            sink.send(offers_message(stream_offers_response::Update::Offer(
                convert::offer(&offer),
            )))
            .await?;
        }
        if let Some(state) = state
            && last_state.as_ref() != Some(&state)
        {
            sink.send(offers_message(stream_offers_response::Update::AgentState(
                state.clone(),
            )))
            .await?;
            last_state = Some(state);
        }
        if shutdown.is_cancelled() {
            return Err(Stop::Done);
        }
        if quiet {
            sink.idle(&watch, shutdown).await?;
        }
    }
}

// --- StreamAgentStates ------------------------------------------------------------------

fn states_message(update: stream_agent_states_response::Update) -> StreamAgentStatesResponse {
    StreamAgentStatesResponse {
        update: Some(update),
    }
}

fn states_heartbeat() -> StreamAgentStatesResponse {
    states_message(stream_agent_states_response::Update::Heartbeat(
        convert::heartbeat(),
    ))
}

/// A team a supervisor's stream is filtered by: its members as the directory last said,
/// asked again every [`Pace::team_refresh`].
pub struct TeamFilter {
    /// Where to ask.
    pub directory: Directory,
    /// The team.
    pub team_id: String,
    /// Its members when the stream was asked for.
    pub members: BTreeSet<String>,
}

/// What a supervisor's stream shows: the agents of the tenant with a profile, optionally
/// only a queue's members and only a team's.
struct View {
    tenant_id: String,
    queue_id: String,
    team: Option<TeamFilter>,
}

impl View {
    fn shows(&self, agent: &Agent) -> bool {
        (self.queue_id.is_empty() || agent.queue_ids.contains(&self.queue_id))
            && self
                .team
                .as_ref()
                .is_none_or(|team| team.members.contains(&agent.agent_id))
    }

    /// The agent's state if it is in the view.
    async fn state(
        &self,
        conn: &mut AnyConnection,
        agent_id: &str,
    ) -> Result<Option<pb::AgentState>> {
        Ok(catalog::agent_with_load(conn, &self.tenant_id, agent_id)
            .await?
            .filter(|(agent, _, _)| self.shows(agent))
            .map(|(agent, open, pending)| convert::agent_state(&agent, open, pending)))
    }

    /// Asks the directory who is in the team now; returns the agents who joined or left
    /// it. A directory that cannot answer leaves the members as they were until the next
    /// refresh; a team deleted since has nobody.
    async fn refresh_team(&mut self) -> BTreeSet<String> {
        let Some(team) = self.team.as_mut() else {
            return BTreeSet::new();
        };
        let members = match team
            .directory
            .team_members(&self.tenant_id, &team.team_id)
            .await
        {
            Ok(members) => members.unwrap_or_default(),
            Err(err) => {
                warn!(team_id = %team.team_id, error = %err, "refreshing a team's members failed");
                return BTreeSet::new();
            }
        };
        let changed = members
            .symmetric_difference(&team.members)
            .cloned()
            .collect();
        team.members = members;
        changed
    }
}

/// A supervisor dashboard's stream: the state of every agent of the tenant (or of one
/// queue's members, or one team's), `snapshot_end`, then each change, and
/// `removed_agent_id` when an agent leaves the view.
pub fn agent_states(
    store: Store,
    tenant_id: String,
    queue_id: String,
    team: Option<TeamFilter>,
    pace: Pace,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<StreamAgentStatesResponse, Status>> {
    spawn_stream(pace, states_heartbeat, move |mut sink| async move {
        let mut view = View {
            tenant_id,
            queue_id,
            team,
        };
        let stop = follow_agent_states(&store, &mut view, &shutdown, &mut sink).await;
        let Err(stop) = stop;
        sink.finish(stop).await;
    })
}

async fn follow_agent_states(
    store: &Store,
    view: &mut View,
    shutdown: &CancellationToken,
    sink: &mut Sink<StreamAgentStatesResponse>,
) -> Result<Infallible, Stop> {
    let tenant_id = view.tenant_id.clone();
    let watch = store.changes().watch([Topic::Tenant(tenant_id.clone())]);
    let mut sent: HashMap<String, pb::AgentState> = HashMap::new();
    let (mut cursor, snapshot) = {
        let mut conn = store.conn().await?;
        let cursor = events::last_sequence(&mut conn).await?;
        let agents = catalog::all_agents(&mut conn, &tenant_id, &view.queue_id).await?;
        let mut states = Vec::with_capacity(agents.len());
        for agent in agents.iter().filter(|agent| view.shows(agent)) {
            let (open, pending) =
                catalog::agent_load(&mut conn, &tenant_id, &agent.agent_id).await?;
            states.push(convert::agent_state(agent, open, pending));
        }
        (cursor, states)
    };
    for state in snapshot {
        sent.insert(state.agent_id.clone(), state.clone());
        sink.send(states_message(
            stream_agent_states_response::Update::AgentState(state),
        ))
        .await?;
    }
    sink.send(states_message(
        stream_agent_states_response::Update::SnapshotEnd(convert::snapshot_end()),
    ))
    .await?;
    let refresh = sink.pace.team_refresh;
    let mut next_refresh = view.team.as_ref().map(|_| Instant::now() + refresh);
    loop {
        let mut agents = BTreeSet::new();
        if next_refresh.is_some_and(|at| at <= Instant::now()) {
            agents.extend(view.refresh_team().await);
            next_refresh = Some(Instant::now() + refresh);
        }
        let (quiet, changes) = {
            let mut conn = store.conn().await?;
            let batch = events::tenant_after(&mut conn, &tenant_id, cursor, EVENT_BATCH).await?;
            let quiet = batch.is_empty();
            if let Some(last) = batch.last() {
                cursor = last.sequence;
            }
            agents.extend(
                batch
                    .into_iter()
                    .filter(|event| !event.agent_id.is_empty())
                    .map(|event| event.agent_id),
            );
            let mut changes = Vec::with_capacity(agents.len());
            for agent_id in agents {
                let state = view.state(&mut conn, &agent_id).await?;
                changes.push((agent_id, state));
            }
            (quiet, changes)
        };
        for (agent_id, state) in changes {
            match state {
                Some(state) if sent.get(&agent_id) != Some(&state) => {
                    sent.insert(agent_id, state.clone());
                    sink.send(states_message(
                        stream_agent_states_response::Update::AgentState(state),
                    ))
                    .await?;
                }
                Some(_) => {}
                None => {
                    if sent.remove(&agent_id).is_some() {
                        sink.send(states_message(
                            stream_agent_states_response::Update::RemovedAgentId(agent_id),
                        ))
                        .await?;
                    }
                }
            }
        }
        if shutdown.is_cancelled() {
            return Err(Stop::Done);
        }
        if quiet {
            sink.idle_until(&watch, shutdown, next_refresh).await?;
        }
    }
}
