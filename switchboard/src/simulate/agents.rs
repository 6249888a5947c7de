//! One simulated agent: Available, the offer stream open, each offer read for a moment
//! and then accepted, rejected or missed; an accepted conversation is a short chat with the
//! customer (the customer's lines sent by the bot's API key, as a connector would), ended
//! and wrapped up; now and then a break (Away, then Available); RONA left by hand after a
//! missed offer. Transfers are a later step of the simulation.
//!
//! At closing time (`World::hurry`) an agent takes no new offers (Away), finishes what it
//! holds without human delays, and takes over the offers it missed that are still pending;
//! [`close_leftovers`] then claims and closes what of the run still waits in a queue.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update;
use tokio::sync::{mpsc, watch};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::{CALL_TIMEOUT, World};
use crate::seed::{ApiKey, Bearer};

type AgentClient =
    routing::agent_service_client::AgentServiceClient<InterceptedService<Channel, Bearer>>;
type AgentConversations = conv::conversation_service_client::ConversationServiceClient<
    InterceptedService<Channel, Bearer>,
>;
type CustomerConversations = conv::conversation_service_client::ConversationServiceClient<
    InterceptedService<Channel, ApiKey>,
>;

/// Longest an agent takes at closing time to finish the conversations in hand.
const FINISH_UP: Duration = Duration::from_secs(30);

/// Mean time between an agent's breaks, before `--pace`.
const MEAN_BREAK_INTERVAL: Duration = Duration::from_secs(60);

/// A demo agent and its bearer token.
#[derive(Clone, Debug)]
pub struct Agent {
    /// User id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Bearer token.
    pub token: String,
}

/// The clients one agent's tasks use.
#[derive(Clone)]
struct Desk {
    world: Arc<World>,
    name: String,
    routing: AgentClient,
    conversations: AgentConversations,
    customer: CustomerConversations,
    /// Offers left unanswered on purpose, taken over at closing time if still pending.
    missed: Arc<Mutex<Vec<routing::Offer>>>,
}

/// Runs one agent until `stop` turns true, then sets it Offline.
pub async fn run(world: Arc<World>, agent: Agent, seed: u64, mut stop: watch::Receiver<bool>) {
    let desk = match Desk::new(&world, &agent) {
        Ok(desk) => desk,
        Err(err) => return world.stats.error(&agent.name, err),
    };
    let mut rng = StdRng::seed_from_u64(seed);

    // Available before the stream opens: offers made meanwhile arrive in its snapshot.
    desk.set_presence(routing::Presence::Available, "").await;
    let (rona_tx, rona_rx) = mpsc::unbounded_channel();
    let presence = tokio::spawn(presence_loop(
        desk.clone(),
        StdRng::seed_from_u64(rng.random()),
        rona_rx,
    ));

    let mut handled: HashSet<String> = HashSet::new();
    let mut chats = tokio::task::JoinSet::new();
    let stopping = stop.clone();
    'connected: while !*stop.borrow() {
        let mut client = desk.routing.clone();
        let call = client.stream_offers(routing::StreamOffersRequest {});
        let mut stream = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(stream)) => stream.into_inner(),
            Ok(Err(status)) => {
                desk.error("StreamOffers", status);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => {
                desk.error("StreamOffers", "no answer in time");
                continue;
            }
        };
        loop {
            tokio::select! {
                () = super::raised(&mut stop) => break 'connected,
                Some(_) = chats.join_next(), if !chats.is_empty() => {}
                message = stream.message() => match message {
                    Ok(Some(message)) => match message.update {
                        Some(Update::Offer(offer)) => {
                            on_offer(&desk, offer, &mut handled, &mut chats, &mut rng);
                        }
                        Some(Update::AgentState(state))
                            if state.presence() == routing::Presence::Rona =>
                        {
                            let _ = rona_tx.send(());
                        }
                        _ => {}
                    },
                    // The server ended the stream (a restart): open it again.
                    Ok(None) => continue 'connected,
                    Err(status) => {
                        if *stopping.borrow() {
                            break 'connected;
                        }
                        desk.error("StreamOffers", status);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue 'connected;
                    }
                },
            }
        }
    }
    // Closing time: no new offers, the work in hand finished without human delays.
    presence.abort();
    let _ = presence.await;
    desk.set_presence(routing::Presence::Away, "closing time")
        .await;
    let finished = tokio::time::timeout(FINISH_UP, async {
        while chats.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        chats.abort_all();
    }
    let missed = std::mem::take(&mut *desk.missed.lock().expect("missed offers lock"));
    for offer in missed {
        take(&desk, offer, &mut rng).await;
    }
    desk.set_presence(routing::Presence::Offline, "").await;
}

/// Accepts an offer (one already gone is no error) and serves the conversation to the end.
async fn take(desk: &Desk, offer: routing::Offer, rng: &mut StdRng) {
    let mut client = desk.routing.clone();
    let call = client.accept_offer(routing::AcceptOfferRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        offer_id: offer.id.clone(),
    });
    if desk.answered("AcceptOffer", call).await.is_none() {
        return;
    }
    desk.world.stats.accepted(&offer.conversation_id);
    if chat(desk, &offer, rng).await.is_some() {
        desk.world.stats.closed(&offer.conversation_id);
    }
}

/// Claims each of these waiting conversations for one of the agents (a manual pick, which
/// needs no offer) and serves it to the end at once, so that nothing of the run is left for
/// the next person who tries the dev stack. Returns how many were closed.
pub async fn close_leftovers(world: &Arc<World>, agents: &[Agent], ids: Vec<String>) -> u64 {
    let mut desks = Vec::new();
    for agent in agents {
        match Desk::new(world, agent) {
            Ok(desk) => desks.push(desk),
            Err(err) => world.stats.error(&agent.name, err),
        }
    }
    let mut rng = StdRng::seed_from_u64(0);
    let mut closed = 0;
    for id in ids {
        for desk in &desks {
            let mut client = desk.routing.clone();
            let call = client.claim_waiting_work(routing::ClaimWaitingWorkRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                conversation_id: id.clone(),
            });
            let offer = match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(response)) => response.into_inner().offer,
                // No capacity left with this agent: the next one may have some.
                Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => continue,
                // Not waiting (in someone's hands) or offered to an agent now: left open.
                Ok(Err(status))
                    if matches!(
                        status.code(),
                        tonic::Code::NotFound
                            | tonic::Code::FailedPrecondition
                            | tonic::Code::Aborted
                    ) =>
                {
                    break;
                }
                Ok(Err(status)) => {
                    desk.error("ClaimWaitingWork", status);
                    break;
                }
                Err(_) => {
                    desk.error("ClaimWaitingWork", "no answer in time");
                    break;
                }
            };
            let Some(offer) = offer else {
                desk.error("ClaimWaitingWork", "answer without an offer");
                break;
            };
            world.stats.accepted(&offer.conversation_id);
            if chat(desk, &offer, &mut rng).await.is_some() {
                world.stats.closed_at_end(&offer.conversation_id);
                closed += 1;
            }
            break;
        }
    }
    closed
}

fn on_offer(
    desk: &Desk,
    offer: routing::Offer,
    handled: &mut HashSet<String>,
    chats: &mut tokio::task::JoinSet<()>,
    rng: &mut StdRng,
) {
    match offer.state() {
        routing::offer::State::Pending => {
            // A reconnected stream repeats pending offers in its snapshot.
            if !handled.insert(offer.id.clone()) {
                return;
            }
            desk.world
                .stats
                .offer_seen(&offer.conversation_id, Instant::now());
            chats.spawn(answer(
                desk.clone(),
                offer,
                StdRng::seed_from_u64(rng.random()),
            ));
        }
        routing::offer::State::TimedOut if handled.contains(&offer.id) => desk.world.stats.rona(),
        _ => {}
    }
}

/// What an agent does with one offer, from reading it to wrap-up.
async fn answer(desk: Desk, offer: routing::Offer, mut rng: StdRng) {
    let world = desk.world.clone();
    let roll: f64 = rng.random();
    if roll < world.miss {
        // Looking away: the offer times out and the agent enters RONA.
        world.stats.missed();
        desk.missed.lock().expect("missed offers lock").push(offer);
        return;
    }
    desk.pause(&mut rng, 0.8, 4.0).await;
    if roll < world.miss + world.reject {
        let mut client = desk.routing.clone();
        let call = client.reject_offer(routing::RejectOfferRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            offer_id: offer.id.clone(),
            reason: "busy with another customer".into(),
        });
        if desk.answered("RejectOffer", call).await.is_some() {
            world.stats.rejected();
        }
        return;
    }
    take(&desk, offer, &mut rng).await;
}

const AGENT_LINES: &[&str] = &[
    "Thanks for waiting. Let me look into that for you.",
    "I can see your account now, one moment please.",
    "I've checked with the warehouse.",
    "That's sorted: you'll get a confirmation email shortly.",
];

const CUSTOMER_LINES: &[&str] = &[
    "Thank you.",
    "It was order A-1001, I think.",
    "Could you also check the delivery date?",
    "Great, that helps a lot.",
];

/// A short chat, the end and the wrap-up; `None` after an unexpected error (counted).
async fn chat(desk: &Desk, offer: &routing::Offer, rng: &mut StdRng) -> Option<()> {
    let id = &offer.conversation_id;
    let greeting = format!("Hi, this is {}. {}", desk.name, pick(rng, AGENT_LINES));
    desk.pause(rng, 1.0, 3.0).await;
    desk.agent_says(id, &greeting).await?;
    for _ in 0..rng.random_range(1..=3) {
        desk.pause(rng, 2.0, 6.0).await;
        desk.customer_says(id, pick(rng, CUSTOMER_LINES)).await?;
        desk.pause(rng, 1.0, 4.0).await;
        desk.agent_says(id, pick(rng, AGENT_LINES)).await?;
    }
    desk.pause(rng, 1.0, 3.0).await;
    desk.agent_says(id, "Is there anything else? Have a good day!")
        .await?;
    let mut client = desk.conversations.clone();
    let call = client.end_conversation(conv::EndConversationRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        conversation_id: id.clone(),
    });
    desk.call("EndConversation", call).await?;
    desk.pause(rng, 1.0, 5.0).await;
    let reason = desk
        .world
        .queue(&offer.queue_id)
        .and_then(|q| q.wrap_up_reason_ids.choose(rng).cloned());
    let Some(reason) = reason else {
        desk.error(
            "SubmitWrapUp",
            format!("no wrap-up reason known for queue {}", offer.queue_id),
        );
        return None;
    };
    let mut client = desk.conversations.clone();
    let call = client.submit_wrap_up(conv::SubmitWrapUpRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        conversation_id: id.clone(),
        wrap_up_reason_ids: vec![reason],
        ..Default::default()
    });
    desk.call("SubmitWrapUp", call).await?;
    Some(())
}

/// Breaks now and then, and leaving RONA by hand a moment after it happens. One task, so
/// that the agent's own presence changes never race each other.
async fn presence_loop(desk: Desk, mut rng: StdRng, mut rona: mpsc::UnboundedReceiver<()>) {
    loop {
        let until_break = if desk.world.pace > 0.0 {
            let gap = -(1.0 - rng.random::<f64>()).ln();
            MEAN_BREAK_INTERVAL.mul_f64(gap * desk.world.pace)
        } else {
            // At pace 0 agents work without breaks.
            Duration::MAX / 4
        };
        tokio::select! {
            event = rona.recv() => {
                if event.is_none() {
                    return;
                }
                desk.pause(&mut rng, 2.0, 6.0).await;
                desk.set_presence(routing::Presence::Available, "").await;
            }
            () = tokio::time::sleep(until_break) => {
                desk.world.stats.took_break();
                desk.set_presence(routing::Presence::Away, "coffee").await;
                desk.pause(&mut rng, 5.0, 15.0).await;
                desk.set_presence(routing::Presence::Available, "").await;
            }
        }
    }
}

fn pick<'a>(rng: &mut StdRng, lines: &[&'a str]) -> &'a str {
    lines.choose(rng).copied().unwrap_or("OK.")
}

impl Desk {
    fn new(world: &Arc<World>, agent: &Agent) -> anyhow::Result<Desk> {
        let auth = Bearer::new(&agent.token)?;
        Ok(Desk {
            routing: routing::agent_service_client::AgentServiceClient::with_interceptor(
                world.channel.clone(),
                auth.clone(),
            ),
            conversations:
                conv::conversation_service_client::ConversationServiceClient::with_interceptor(
                    world.channel.clone(),
                    auth,
                ),
            customer:
                conv::conversation_service_client::ConversationServiceClient::with_interceptor(
                    world.channel.clone(),
                    ApiKey::new(&world.bot_api_key)?,
                ),
            name: agent.name.clone(),
            world: world.clone(),
            missed: Arc::default(),
        })
    }
    /// A human moment of `lo` to `hi` seconds, times `--pace`.
    async fn pause(&self, rng: &mut StdRng, lo: f64, hi: f64) {
        if self.world.hurry.load(Ordering::Relaxed) {
            return;
        }
        let seconds = rng.random_range(lo..hi) * self.world.pace;
        if seconds > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        }
    }

    fn error(&self, what: &str, err: impl std::fmt::Display) {
        self.world
            .stats
            .error(&format!("{} {what}", self.name), err);
    }

    /// A call that must succeed: `None` after an error (counted).
    async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Option<T> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(response)) => Some(response.into_inner()),
            Ok(Err(status)) => {
                self.error(what, status);
                None
            }
            Err(_) => {
                self.error(what, "no answer in time");
                None
            }
        }
    }

    /// An answer to an offer: `None` when the offer was gone by then (withdrawn or timed
    /// out, capacity taken meanwhile), which the engine does on purpose, or after an error.
    async fn answered<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Option<T> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(response)) => Some(response.into_inner()),
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition
                        | tonic::Code::NotFound
                        | tonic::Code::ResourceExhausted
                ) =>
            {
                self.world.stats.lost_race();
                None
            }
            Ok(Err(status)) => {
                self.error(what, status);
                None
            }
            Err(_) => {
                self.error(what, "no answer in time");
                None
            }
        }
    }

    async fn set_presence(&self, presence: routing::Presence, reason: &str) {
        let mut client = self.routing.clone();
        let call = client.set_presence(routing::SetPresenceRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            presence: presence as i32,
            reason: reason.into(),
            ..Default::default()
        });
        self.call("SetPresence", call).await;
    }

    async fn agent_says(&self, conversation_id: &str, text: &str) -> Option<()> {
        let mut client = self.conversations.clone();
        let call = client.send_message(conv::SendMessageRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            conversation_id: conversation_id.to_owned(),
            text: text.to_owned(),
            ..Default::default()
        });
        self.call("SendMessage (agent)", call).await?;
        self.world.stats.message();
        Some(())
    }

    async fn customer_says(&self, conversation_id: &str, text: &str) -> Option<()> {
        let mut client = self.customer.clone();
        let call = client.send_message(conv::SendMessageRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            conversation_id: conversation_id.to_owned(),
            text: text.to_owned(),
            sender: conv::SenderKind::Customer as i32,
            ..Default::default()
        });
        self.call("SendMessage (customer)", call).await?;
        self.world.stats.message();
        Some(())
    }
}
