//! The suite, its administrator and its agents.

use super::*;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use switchboard_proto::common::v1::Channel as ChatChannel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::directory::v1 as directory;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::bench::load::CALL_TIMEOUT;
use crate::bench::scenarios::{self, STREAMS_PER_CONNECTION, Store};
use crate::seed::{self, ApiKey, Bearer, DevCredentials};
use crate::suite::RunningSuite;

/// One scenario's suite with the demo tenant, the administrator's and the bot's clients.
pub(super) struct Stage {
    pub(super) running: RunningSuite,
    pub(super) credentials: Arc<DevCredentials>,
    pub(super) jwt_secret: String,
    pub(super) queues: QueueClient,
    pub(super) directory: DirectoryClient,
    pub(super) bot: Conversations<ApiKey>,
    pub(super) tracker: Arc<Tracker>,
}

impl Stage {
    pub(super) async fn start(dir: &Path, metrics: bool) -> anyhow::Result<Stage> {
        let (running, credentials, secrets) =
            scenarios::start_suite_with(dir, Store::Sqlite, metrics).await?;
        let clients = async {
            let gateway = seed::connect(running.addresses.gateway).await?;
            let admin = Bearer::new(&credentials.user("admin").token)?;
            anyhow::Ok((
                routing::queue_service_client::QueueServiceClient::with_interceptor(
                    gateway.clone(),
                    admin.clone(),
                ),
                directory::directory_service_client::DirectoryServiceClient::with_interceptor(
                    gateway.clone(),
                    admin,
                ),
                conv::conversation_service_client::ConversationServiceClient::with_interceptor(
                    // The creates get a connection of their own, apart from the
                    // administrator's set-up calls.
                    seed::connect(running.addresses.gateway).await?,
                    ApiKey::new(&credentials.bot.api_key)?,
                ),
            ))
        }
        .await;
        let (queues, directory, bot) = match clients {
            Ok(clients) => clients,
            Err(err) => {
                let _ = running.stop().await;
                return Err(err);
            }
        };
        Ok(Stage {
            running,
            credentials: Arc::new(credentials),
            jwt_secret: secrets.jwt_secret,
            queues,
            directory,
            bot,
            tracker: Arc::default(),
        })
    }

    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await
    }

    /// A queue of the demo program (web chat) with no member.
    pub(super) async fn create_unserved_queue(&self) -> anyhow::Result<String> {
        let queue = self
            .queues
            .clone()
            .create_queue(routing::CreateQueueRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                queue: Some(routing::Queue {
                    program_id: self.credentials.program_id.clone(),
                    display_name: "Backlog (no agents)".into(),
                    accepted_channels: vec![ChatChannel::Webchat as i32],
                    assignment_method: routing::AssignmentMethod::MostAvailableCapacity as i32,
                    max_open_per_agent: 3,
                    offer_timeout: Some(prost_types::Duration {
                        seconds: 120,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .context("creating the queue no agent serves")?
            .into_inner()
            .queue
            .context("CreateQueue returned no queue")?;
        Ok(queue.id)
    }

    /// Conversations waiting in `queue_id`, as routing-svc counts them.
    pub(super) async fn waiting(&self, queue_id: &str) -> anyhow::Result<i32> {
        let state = self
            .queues
            .clone()
            .get_queue_state(routing::GetQueueStateRequest {
                queue_id: queue_id.to_owned(),
            })
            .await?
            .into_inner()
            .queue_state
            .context("GetQueueState returned no state")?;
        Ok(state.waiting)
    }

    /// A create by the bot into `queue_id`.
    pub(super) fn create_request(&self, queue_id: &str, i: u64) -> conv::CreateConversationRequest {
        conv::CreateConversationRequest {
            queue_id: queue_id.to_owned(),
            ..scenarios::create_request(&self.credentials, i)
        }
    }
}

/// One agent's clients, all through the gateway with the agent's own token.
#[derive(Clone)]
pub(super) struct Desk {
    pub(super) routing: AgentClient,
    pub(super) conversations: Conversations<Bearer>,
    pub(super) customer: Conversations<ApiKey>,
    pub(super) wrap_up_reason: String,
    pub(super) tracker: Arc<Tracker>,
}

/// The scenario's agents; each serves its offer stream until [`Floor::stop`].
#[derive(Default)]
pub(super) struct Floor {
    pub(super) desks: Vec<Desk>,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Connections to the gateway, [`STREAMS_PER_CONNECTION`] agents on each.
    pub(super) connections: Vec<Channel>,
    pub(super) stop: CancellationToken,
}

impl Floor {
    /// Sets up `count` more agents: user, routing profile in the demo queue, Available, offer
    /// stream open (its snapshot read), serving.
    pub(super) async fn add(&mut self, stage: &Stage, count: usize) -> anyhow::Result<()> {
        let first = self.desks.len();
        let total = first + count;
        while self.connections.len() * STREAMS_PER_CONNECTION < total {
            self.connections
                .push(seed::connect(stage.running.addresses.gateway).await?);
        }
        let customer_key = ApiKey::new(&stage.credentials.bot.api_key)?;
        let wrap_up_reason = stage
            .credentials
            .wrap_up_reason_ids
            .first()
            .cloned()
            .context("the demo queue has no wrap-up reason")?;
        let set_up: Vec<anyhow::Result<(Desk, tokio::task::JoinHandle<()>)>> =
            futures::stream::iter(first..total)
                .map(|i| {
                    let channel = self.connections[i / STREAMS_PER_CONNECTION].clone();
                    let desk_parts = (customer_key.clone(), wrap_up_reason.clone());
                    let stop = self.stop.clone();
                    async move {
                        let user_id = create_agent(stage, i).await?;
                        let token = gateway::mint_hs256_token(
                            &stage.jwt_secret,
                            "switchboard",
                            "switchboard",
                            &user_id,
                            TOKEN_TTL,
                        );
                        let bearer = Bearer::new(&token)?;
                        let desk = Desk {
                            routing: routing::agent_service_client::AgentServiceClient::with_interceptor(channel.clone(), bearer.clone()),
                            conversations: conv::conversation_service_client::ConversationServiceClient::with_interceptor(channel.clone(), bearer),
                            customer: conv::conversation_service_client::ConversationServiceClient::with_interceptor(channel, desk_parts.0),
                            wrap_up_reason: desk_parts.1,
                            tracker: stage.tracker.clone(),
                        };
                        desk.set_presence(routing::Presence::Available)
                            .await
                            .with_context(|| format!("bench agent {i}: SetPresence"))?;
                        let task = desk
                            .open(stop)
                            .await
                            .with_context(|| format!("bench agent {i}: StreamOffers"))?;
                        anyhow::Ok((desk, task))
                    }
                })
                .buffer_unordered(SETUP_IN_FLIGHT)
                .collect()
                .await;
        for outcome in set_up {
            let (desk, task) = outcome?;
            self.desks.push(desk);
            self.tasks.push(task);
        }
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.desks.len()
    }

    /// Sets every agent's presence (no new offers while Away).
    pub(super) async fn set_presence(&self, presence: routing::Presence) -> anyhow::Result<()> {
        let outcomes: Vec<anyhow::Result<()>> = futures::stream::iter(&self.desks)
            .map(|desk| desk.set_presence(presence))
            .buffer_unordered(SETUP_IN_FLIGHT)
            .collect()
            .await;
        outcomes.into_iter().collect()
    }

    pub(super) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// A user with the agent role, created by the demo administrator through the gateway, and
/// its routing profile in the demo queue; returns the user id.
pub(super) async fn create_agent(stage: &Stage, i: usize) -> anyhow::Result<String> {
    let user = stage
        .directory
        .clone()
        .create_user(directory::CreateUserRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            user: Some(directory::User {
                display_name: format!("Bench agent {i}"),
                email: format!(
                    "bench-agent-{i}-{}@bench.switchboard.invalid",
                    uuid::Uuid::new_v4().simple()
                ),
                roles: vec![directory::Role::Agent as i32],
                ..Default::default()
            }),
        })
        .await
        .with_context(|| format!("bench agent {i}: CreateUser"))?
        .into_inner()
        .user
        .context("CreateUser returned no user")?;
    stage
        .queues
        .clone()
        .set_agent_profile(routing::SetAgentProfileRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            agent_profile: Some(routing::AgentProfile {
                agent_id: user.id.clone(),
                display_name: user.display_name.clone(),
                capacity_profile_id: stage.credentials.capacity_profile_id.clone(),
                queue_ids: vec![stage.credentials.queue_id.clone()],
                ..Default::default()
            }),
        })
        .await
        .with_context(|| format!("bench agent {i}: SetAgentProfile"))?;
    Ok(user.id)
}

impl Desk {
    pub(super) async fn set_presence(&self, presence: routing::Presence) -> anyhow::Result<()> {
        self.routing
            .clone()
            .set_presence(routing::SetPresenceRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                presence: presence as i32,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Opens the agent's offer stream and serves it until `stop`; returns once the stream's
    /// snapshot is read, so that every later offer is live.
    pub(super) async fn open(
        &self,
        stop: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let stream = self
            .routing
            .clone()
            .stream_offers(routing::StreamOffersRequest {})
            .await?
            .into_inner();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(self.clone().serve(stream, stop, ready_tx));
        tokio::time::timeout(CALL_TIMEOUT, ready_rx)
            .await
            .context("no snapshot in time")?
            .context("the stream ended before its snapshot")?;
        Ok(task)
    }

    pub(super) async fn serve(
        self,
        mut stream: tonic::Streaming<routing::StreamOffersResponse>,
        stop: CancellationToken,
        ready: oneshot::Sender<()>,
    ) {
        let mut ready = Some(ready);
        let mut answers = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Some(_) = answers.join_next(), if !answers.is_empty() => {}
                message = stream.message() => match message {
                    Ok(Some(message)) => match message.update {
                        // The first sight of a pending offer: answered at once.
                        Some(Update::Offer(offer))
                            if offer.state() == routing::offer::State::Pending
                                && self.tracker.offered(&offer.conversation_id, Instant::now()) =>
                        {
                            self.tracker.busy.fetch_add(1, Ordering::Relaxed);
                            answers.spawn(self.clone().answer(offer));
                        }
                        Some(Update::SnapshotEnd(_)) => {
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(());
                            }
                        }
                        _ => {}
                    },
                    Ok(None) => {
                        self.tracker.error("StreamOffers", "the server ended the stream");
                        return;
                    }
                    Err(status) => {
                        if !stop.is_cancelled() {
                            self.tracker.error("StreamOffers", status);
                        }
                        return;
                    }
                },
            }
        }
    }

    pub(super) async fn answer(self, offer: routing::Offer) {
        if let Err(err) = self.serve_conversation(&offer).await {
            self.tracker.error("answering an offer", format!("{err:#}"));
        }
        self.tracker.busy.fetch_sub(1, Ordering::Relaxed);
    }

    /// Accept, (chat,) end, wrap up: at once, as fast as the suite answers.
    pub(super) async fn serve_conversation(&self, offer: &routing::Offer) -> anyhow::Result<()> {
        let id = &offer.conversation_id;
        patiently(|| {
            let mut client = self.routing.clone();
            let request = routing::AcceptOfferRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                offer_id: offer.id.clone(),
            };
            async move { client.accept_offer(request).await }
        })
        .await
        .context("AcceptOffer")?;
        if self.tracker.chat.load(Ordering::Relaxed) {
            for line in 0..2 {
                patiently(|| {
                    let mut client = self.conversations.clone();
                    let request = conv::SendMessageRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        conversation_id: id.clone(),
                        text: format!("Agent line {line}: let me look into that."),
                        ..Default::default()
                    };
                    async move { client.send_message(request).await }
                })
                .await
                .context("SendMessage (agent)")?;
                patiently(|| {
                    let mut client = self.customer.clone();
                    let request = conv::SendMessageRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        conversation_id: id.clone(),
                        text: format!("Customer line {line}: thank you."),
                        sender: conv::SenderKind::Customer as i32,
                        ..Default::default()
                    };
                    async move { client.send_message(request).await }
                })
                .await
                .context("SendMessage (customer)")?;
            }
        }
        patiently(|| {
            let mut client = self.conversations.clone();
            let request = conv::EndConversationRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                conversation_id: id.clone(),
            };
            async move { client.end_conversation(request).await }
        })
        .await
        .context("EndConversation")?;
        patiently(|| {
            let mut client = self.conversations.clone();
            let request = conv::SubmitWrapUpRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                conversation_id: id.clone(),
                wrap_up_reason_ids: vec![self.wrap_up_reason.clone()],
                ..Default::default()
            };
            async move { client.submit_wrap_up(request).await }
        })
        .await
        .context("SubmitWrapUp")?;
        self.tracker.closed(id);
        Ok(())
    }
}

/// A call, repeated while the conversation is not yet the agent's in conversation-svc: the
/// assignment reaches conversation-svc after AcceptOffer has answered, through routing-svc's
/// outbox. Within [`CALL_TIMEOUT`] in all.
pub(super) async fn patiently<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match tokio::time::timeout_at(deadline, call()).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::PermissionDenied
                ) && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => {
                return Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {CALL_TIMEOUT:?}"
                )));
            }
        }
    }
}
