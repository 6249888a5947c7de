//! The model test of the conversation lifecycle (issue "lifecycle complete"): random
//! sequences of every operation, by two agents, a supervisor, the bot and the customer,
//! through the gateway on SQLite and PostgreSQL. Two queues of the demo program: the demo
//! queue (both agents; conversations stay with an agent who logs out) and a second one
//! (agent1 only; conversations return to the queue on logout). After each step, once the
//! background work settles, every invariant is checked against what the API shows:
//!
//! - one owner at a time: an OPEN conversation has none; ACTIVE, WAITING and WRAP_UP have
//!   one, present once as OWNER; invitations wait only while the conversation is worked;
//! - capacity equals what each agent holds: one unit per conversation it owns and has not
//!   closed, plus one per conference it takes part in (a consultant holds none);
//! - visibility: an agent sees an OPEN conversation of its queues and those it owns or
//!   takes part in, and nothing else;
//! - status labels: the count per label is the number of conversations not CLOSED that
//!   carry it;
//! - events: numbered 1..n without gaps, n the conversation's last sequence, the last one in
//!   the conversation's state, and each change of state a legal transition;
//! - a refused operation answers a known error and changes nothing.
//!
//! The sequence comes from a seed (`SWITCHBOARD_MODEL_SEED` replays one); a failure prints
//! the seed and every step taken.

use std::fmt::Write as _;

use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::conversation::v1::conversation_config_service_client::ConversationConfigServiceClient;
use switchboard_proto::conversation::v1::participant::State as Standing;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update as OfferUpdate;
use switchboard_tests::flows::{
    WAIT, agent_state, event_log_problem, offer_stream, set_presence, start_chat, web_chat_queue,
};
use switchboard_tests::{Backend, Harness, rid};
use tokio_stream::StreamExt;
use tonic::Code;

/// Steps per seed.
const STEPS: usize = 60;
/// Seeds run when none is given.
const SEEDS: [u64; 3] = [0x5eed_0001, 0x5eed_0002, 0x5eed_0003];
/// Conversations not yet closed at most at once, within the agents' capacity.
const MAX_LIVE: usize = 3;

const AGENTS: [&str; 2] = ["agent1", "agent2"];
const ACTORS: [&str; 3] = ["agent1", "agent2", "supervisor"];

/// A small deterministic generator (xorshift64*), so that a seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What one run knows: the suite, the conversations it created, the agents' offer
/// streams and the log of steps.
struct Run<'a> {
    h: &'a Harness,
    rng: Rng,
    seed: u64,
    conversations: Vec<String>,
    streams: Vec<tonic::Streaming<routing::StreamOffersResponse>>,
    /// The second queue, which returns conversations on logout; only agent1 serves it.
    second_queue: String,
    /// The status labels of the run.
    labels: Vec<String>,
    log: String,
}

/// The queues each agent of [`AGENTS`] serves, as the run set them up.
fn queues_of<'q>(agent: &str, demo_queue: &'q str, second_queue: &'q str) -> Vec<&'q str> {
    if agent == "agent1" {
        vec![demo_queue, second_queue]
    } else {
        vec![demo_queue]
    }
}

switchboard_tests::on_each_backend!(random_operations_keep_every_invariant);

async fn random_operations_keep_every_invariant(backend: &Backend) {
    let seeds: Vec<u64> = match std::env::var("SWITCHBOARD_MODEL_SEED") {
        Ok(seed) => vec![seed.parse().expect("SWITCHBOARD_MODEL_SEED is a number")],
        Err(_) => SEEDS.to_vec(),
    };
    for seed in seeds {
        let h = Harness::start(backend)
            .await
            .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()));
        let mut streams = Vec::new();
        for agent in AGENTS {
            streams.push(offer_stream(&h, agent).await);
        }
        let second_queue = second_queue(&h).await;
        let labels = labels(&h).await;
        let mut run = Run {
            h: &h,
            rng: Rng(seed),
            seed,
            conversations: Vec::new(),
            streams,
            second_queue,
            labels,
            log: String::new(),
        };
        for step in 0..STEPS {
            run.step(step).await;
            run.check_invariants().await;
        }
        if std::env::var_os("SWITCHBOARD_MODEL_LOG").is_some() {
            eprintln!("seed {seed} on {}:\n{}", backend.name(), run.log);
        }
        h.stop().await.expect("the suite stops cleanly");
    }
}

/// A second web-chat queue of the demo program that returns conversations on logout, served
/// by agent1 besides the demo queue.
async fn second_queue(h: &Harness) -> String {
    let returning = routing::Queue {
        logout_behavior: routing::LogoutBehavior::ReturnToQueue as i32,
        ..Default::default()
    };
    web_chat_queue(h, "Model returns on logout", returning, &["agent1"]).await
}

/// Two status labels of the demo tenant.
async fn labels(h: &Harness) -> Vec<String> {
    let mut config =
        ConversationConfigServiceClient::with_interceptor(h.channel.clone(), h.bearer("admin"));
    let mut ids = Vec::new();
    for name in ["Awaiting customer", "Escalated to billing"] {
        let label = config
            .create_status_label(conv::CreateStatusLabelRequest {
                request_id: rid(),
                status_label: Some(conv::StatusLabel {
                    display_name: name.into(),
                    ..Default::default()
                }),
            })
            .await
            .expect("create status label")
            .into_inner()
            .status_label
            .expect("label");
        ids.push(label.id);
    }
    ids
}

/// Whether `code` is an answer a refused operation may give.
fn known_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::FailedPrecondition
            | Code::NotFound
            | Code::InvalidArgument
            | Code::PermissionDenied
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

/// Whether a conversation may go from `from` to `to` between two of its events: the
/// lifecycle of product rule 2 (and a reopen).
fn legal(from: i32, to: i32) -> bool {
    use State::*;
    let Ok(from) = State::try_from(from) else {
        return false;
    };
    let Ok(to) = State::try_from(to) else {
        return false;
    };
    from == to
        || matches!(
            (from, to),
            (Open, Active)
                | (Open, Closed)
                | (Active, Waiting)
                | (Waiting, Active)
                | (Active | Waiting, WrapUp)
                | (Active | Waiting, Open)
                | (Active | Waiting, Closed)
                | (WrapUp, Closed)
                | (Closed, Open)
        )
}

/// How many operations [`Run::operate`] knows.
const OPERATIONS: usize = 20;

/// The operations (numbers of [`Run::operate`]) a conversation in `state` allows.
fn plausible(state: i32) -> &'static [usize] {
    match State::try_from(state) {
        Ok(State::Open) => &[0, 0, 0, 13, 14, 14, 16, 17, 19],
        Ok(State::Active | State::Waiting) => &[
            1, 2, 3, 4, 6, 7, 8, 9, 9, 10, 11, 12, 13, 15, 16, 17, 18, 18, 19,
        ],
        Ok(State::WrapUp) => &[5, 5, 5, 13, 17, 19],
        _ => &[1, 4, 5, 13, 17, 17, 17],
    }
}

fn worked(state: i32) -> bool {
    state == State::Active as i32 || state == State::Waiting as i32
}

fn owned_state(state: i32) -> bool {
    worked(state) || state == State::WrapUp as i32
}

impl Run<'_> {
    fn note(&mut self, line: String) {
        let _ = writeln!(self.log, "{line}");
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "model run with seed {} broke an invariant: {what}\nsteps:\n{}",
            self.seed, self.log
        )
    }

    fn id(&self, handle: &str) -> String {
        self.h.creds.user(handle).id.clone()
    }

    async fn read(&self, conversation_id: &str) -> conv::Conversation {
        self.h
            .conversations("supervisor")
            .get_conversation(conv::GetConversationRequest {
                conversation_id: conversation_id.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| self.fail(&format!("supervisor reads {conversation_id}: {e}")))
            .into_inner()
            .conversation
            .expect("conversation")
    }

    /// The next pending offer of `conversation_id` of a kind other than QUEUE on agent
    /// `index`'s stream.
    async fn directed_offer(&mut self, index: usize, conversation_id: &str) -> routing::Offer {
        let stream = &mut self.streams[index];
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let message = stream.next().await?.ok()?;
                if let Some(OfferUpdate::Offer(offer)) = message.update
                    && offer.conversation_id == conversation_id
                    && offer.kind != routing::OfferKind::Queue as i32
                    && offer.state == routing::offer::State::Pending as i32
                {
                    return Some(offer);
                }
            }
        })
        .await;
        match found {
            Ok(Some(offer)) => offer,
            _ => self.fail(&format!(
                "no directed offer of {conversation_id} reached the agent"
            )),
        }
    }

    /// One random step.
    async fn step(&mut self, step: usize) {
        let mut live = 0;
        for id in self.conversations.clone() {
            if self.read(&id).await.state != State::Closed as i32 {
                live += 1;
            }
        }
        if live == 0 || (live < MAX_LIVE && self.rng.below(6) == 0) {
            let chat = start_chat(self.h, &format!("model-{}-{step}", self.seed)).await;
            self.note(format!("{step}: the bot creates {}", chat.id));
            self.conversations.push(chat.id);
            return;
        }
        // Mostly a conversation still going, mostly acted on by its owner: refusals are
        // tested too, but most steps should move something.
        let mut open = Vec::new();
        for id in self.conversations.clone() {
            if self.read(&id).await.state != State::Closed as i32 {
                open.push(id);
            }
        }
        let target = if !open.is_empty() && self.rng.below(5) != 0 {
            self.rng.pick(&open).clone()
        } else {
            self.rng.pick(&self.conversations).clone()
        };
        let before = self.read(&target).await;
        let owner = AGENTS
            .iter()
            .copied()
            .find(|a| self.id(a) == before.owner_agent_id);
        // Mostly an operation the state allows, by whom it expects; sometimes anything.
        let op = match plausible(before.state) {
            ops if self.rng.below(4) != 0 => *self.rng.pick(ops),
            _ => self.rng.below(OPERATIONS),
        };
        let actor = match (op, owner) {
            (12..=14, _) if self.rng.below(4) != 0 => "supervisor",
            (_, Some(owner)) if self.rng.below(3) != 0 => owner,
            _ => *self.rng.pick(&ACTORS),
        };
        let other = match (op, owner) {
            // Mostly the owner logs out, so that logging out has something to act on.
            (18, Some(owner)) if self.rng.below(3) != 0 => owner,
            _ => *self.rng.pick(&AGENTS),
        };
        let (name, result) = self.operate(op, &target, actor, other).await;
        self.note(format!(
            "{step}: {actor} {name} {target} (was {:?}) -> {}",
            State::try_from(before.state).unwrap_or(State::Unspecified),
            match &result {
                Ok(()) => "ok".to_owned(),
                Err(status) => format!("{:?} {}", status.code(), status.message()),
            }
        ));
        if let Err(status) = result {
            if !known_refusal(status.code()) {
                self.fail(&format!("{name} answered {status:?}"));
            }
            let after = self.read(&target).await;
            if after.last_event_sequence != before.last_event_sequence {
                self.fail(&format!(
                    "a refused {name} changed the conversation: events {} -> {}",
                    before.last_event_sequence, after.last_event_sequence
                ));
            }
        }
    }

    /// Runs operation number `op` on `target` by `actor` (with `other`, an agent, where the
    /// operation needs a second person); returns its name and result.
    async fn operate(
        &mut self,
        op: usize,
        target: &str,
        actor: &'static str,
        other: &'static str,
    ) -> (&'static str, Result<(), tonic::Status>) {
        let h = self.h;
        let id = target.to_owned();
        let convs = h.conversations(actor);
        let mut c = convs.clone();
        match op {
            0 => {
                let claimer = other;
                let result = h
                    .agent(claimer)
                    .claim_waiting_work(routing::ClaimWaitingWorkRequest {
                        request_id: rid(),
                        conversation_id: id,
                    })
                    .await
                    .map(drop);
                (
                    if claimer == "agent1" {
                        "(as agent1) claims"
                    } else {
                        "(as agent2) claims"
                    },
                    result,
                )
            }
            1 => {
                let agents_only = self.rng.below(2) == 0;
                let result = c
                    .send_message(conv::SendMessageRequest {
                        request_id: rid(),
                        conversation_id: id,
                        text: "card 4111.1111.1111.1111, thanks".into(),
                        agents_only,
                        ..Default::default()
                    })
                    .await
                    .map(drop);
                ("writes in", result)
            }
            2 => (
                "sets waiting",
                c.set_waiting(conv::SetWaitingRequest {
                    request_id: rid(),
                    conversation_id: id,
                    reason: String::new(),
                })
                .await
                .map(drop),
            ),
            3 => (
                "resumes",
                c.resume_conversation(conv::ResumeConversationRequest {
                    request_id: rid(),
                    conversation_id: id,
                })
                .await
                .map(drop),
            ),
            4 => (
                "ends",
                c.end_conversation(conv::EndConversationRequest {
                    request_id: rid(),
                    conversation_id: id,
                })
                .await
                .map(drop),
            ),
            5 => (
                "wraps up",
                c.submit_wrap_up(conv::SubmitWrapUpRequest {
                    request_id: rid(),
                    conversation_id: id,
                    wrap_up_reason_ids: vec![h.creds.wrap_up_reason_ids[0].clone()],
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
            6 => (
                "unassigns",
                c.unassign_conversation(conv::UnassignConversationRequest {
                    request_id: rid(),
                    conversation_id: id,
                    tenant_id: String::new(),
                })
                .await
                .map(drop),
            ),
            7 => (
                "transfers to the queue",
                c.transfer_conversation(conv::TransferConversationRequest {
                    request_id: rid(),
                    conversation_id: id,
                    target_queue_id: h.creds.queue_id.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
            8 => self.directed(target, actor, other, None).await,
            9 => {
                let role = if self.rng.below(2) == 0 {
                    conv::ParticipantRole::Consultant
                } else {
                    conv::ParticipantRole::Conference
                };
                self.directed(target, actor, other, Some(role)).await
            }
            10 => (
                "ends the conference of",
                c.end_conference(conv::EndConferenceRequest {
                    request_id: rid(),
                    conversation_id: id,
                    wrap_up_reason_ids: vec![h.creds.wrap_up_reason_ids[0].clone()],
                })
                .await
                .map(drop),
            ),
            11 => (
                "leaves",
                c.leave_conversation(conv::LeaveConversationRequest {
                    request_id: rid(),
                    conversation_id: id,
                })
                .await
                .map(drop),
            ),
            12 => (
                "joins (as a supervisor)",
                h.supervisor(actor)
                    .join_conversation(conv::JoinConversationRequest {
                        request_id: rid(),
                        conversation_id: id,
                    })
                    .await
                    .map(drop),
            ),
            13 => (
                "force-closes",
                h.supervisor(actor)
                    .force_close_conversation(conv::ForceCloseConversationRequest {
                        request_id: rid(),
                        conversation_id: id,
                        reason: "model".into(),
                    })
                    .await
                    .map(drop),
            ),
            14 => {
                let agent_id = self.id(other);
                (
                    "assigns with override (as a supervisor)",
                    h.supervisor(actor)
                        .assign_conversation(conv::AssignConversationRequest {
                            request_id: rid(),
                            conversation_id: id,
                            agent_id,
                            queue_id: String::new(),
                            override_limits: true,
                        })
                        .await
                        .map(drop),
                )
            }
            15 => (
                "escalates to voice",
                c.escalate_conversation(conv::EscalateConversationRequest {
                    request_id: rid(),
                    conversation_id: id,
                    mode: conv::Mode::Voice as i32,
                })
                .await
                .map(drop),
            ),
            16 => {
                let queue_id = if self.rng.below(2) == 0 {
                    self.second_queue.clone()
                } else {
                    h.creds.queue_id.clone()
                };
                let name = if queue_id == self.second_queue {
                    "moves to the second queue"
                } else {
                    "moves to the demo queue"
                };
                let result = c
                    .move_conversation_to_queue(conv::MoveConversationToQueueRequest {
                        request_id: rid(),
                        conversation_id: id,
                        queue_id,
                    })
                    .await
                    .map(drop);
                (name, result)
            }
            17 => {
                // The customer writes: after a close this reopens the conversation, or starts
                // a follow-up once the tenant's reopen window has passed.
                let landed = h
                    .bot_conversations()
                    .send_message(conv::SendMessageRequest {
                        request_id: rid(),
                        conversation_id: id,
                        text: "Me again".into(),
                        sender: conv::SenderKind::Customer as i32,
                        ..Default::default()
                    })
                    .await;
                let result = match landed {
                    Ok(response) => {
                        let message = response.into_inner().message.expect("message");
                        if !self.conversations.contains(&message.conversation_id) {
                            self.note(format!(
                                "   a follow-up conversation {} starts",
                                message.conversation_id
                            ));
                            self.conversations.push(message.conversation_id);
                        }
                        Ok(())
                    }
                    Err(status) => Err(status),
                };
                ("(as the customer) writes in", result)
            }
            18 => {
                // `other` logs out, then comes back Away (offers only go to Available).
                set_presence(h, other, routing::Presence::Offline).await;
                set_presence(h, other, routing::Presence::Away).await;
                (
                    if other == "agent1" {
                        "sees agent1 log out and back in"
                    } else {
                        "sees agent2 log out and back in"
                    },
                    Ok(()),
                )
            }
            _ => {
                let label = match self.rng.below(3) {
                    0 => String::new(),
                    n => self.labels[n - 1].clone(),
                };
                (
                    if label.is_empty() {
                        "clears the status label of"
                    } else {
                        "sets a status label on"
                    },
                    c.set_conversation_status(conv::SetConversationStatusRequest {
                        request_id: rid(),
                        conversation_id: id,
                        status_label_id: label,
                    })
                    .await
                    .map(drop),
                )
            }
        }
    }

    /// A transfer to agent `other` (`role` None) or an invitation of it in `role`, by
    /// `actor`; when asked for, `other` answers: accepts, rejects, or (an invitation) the
    /// actor cancels it. `other` is Available only while it answers.
    async fn directed(
        &mut self,
        target: &str,
        actor: &'static str,
        other: &'static str,
        role: Option<conv::ParticipantRole>,
    ) -> (&'static str, Result<(), tonic::Status>) {
        let h = self.h;
        let index = AGENTS.iter().position(|a| *a == other).expect("an agent");
        let agent_id = self.id(other);
        set_presence(h, other, routing::Presence::Available).await;
        let mut c = h.conversations(actor);
        let (name, asked) = match role {
            None => (
                "transfers to an agent",
                c.transfer_conversation(conv::TransferConversationRequest {
                    request_id: rid(),
                    conversation_id: target.to_owned(),
                    target_agent_id: agent_id,
                    ..Default::default()
                })
                .await
                .map(|r| (r.into_inner().transfer.expect("transfer").id, String::new())),
            ),
            Some(role) => (
                if role == conv::ParticipantRole::Consultant {
                    "invites to consult"
                } else {
                    "invites to a conference"
                },
                c.invite_participant(conv::InviteParticipantRequest {
                    request_id: rid(),
                    conversation_id: target.to_owned(),
                    agent_id,
                    role: role as i32,
                    note: String::new(),
                })
                .await
                .map(|r| {
                    let p = r.into_inner().participant.expect("participant");
                    (String::new(), p.invitation_id)
                }),
            ),
        };
        let result = match asked {
            Err(status) => Err(status),
            Ok((transfer_id, invitation_id)) => {
                let offer = self.directed_offer(index, target).await;
                let answer = self.rng.below(3);
                self.note(format!(
                    "   {other} {} offer {}",
                    ["accepts", "rejects", "sees the sender cancel"][answer],
                    offer.id
                ));
                match answer {
                    0 => {
                        let accepted = h
                            .agent(other)
                            .accept_offer(routing::AcceptOfferRequest {
                                request_id: rid(),
                                offer_id: offer.id,
                            })
                            .await;
                        if let Err(status) = accepted {
                            self.fail(&format!("accepting a fresh offer failed: {status:?}"));
                        }
                    }
                    1 => {
                        h.agent(other)
                            .reject_offer(routing::RejectOfferRequest {
                                request_id: rid(),
                                offer_id: offer.id,
                                reason: "busy".into(),
                            })
                            .await
                            .unwrap_or_else(|e| self.fail(&format!("reject failed: {e:?}")));
                    }
                    _ if !invitation_id.is_empty() => {
                        c.cancel_invitation(conv::CancelInvitationRequest {
                            request_id: rid(),
                            conversation_id: target.to_owned(),
                            invitation_id: invitation_id.clone(),
                        })
                        .await
                        .unwrap_or_else(|e| self.fail(&format!("cancel failed: {e:?}")));
                    }
                    _ => {
                        // A transfer is not cancelled; the supervisor closes instead.
                        h.supervisor("supervisor")
                            .force_close_conversation(conv::ForceCloseConversationRequest {
                                request_id: rid(),
                                conversation_id: target.to_owned(),
                                reason: "model".into(),
                            })
                            .await
                            .unwrap_or_else(|e| self.fail(&format!("force close failed: {e:?}")));
                    }
                }
                self.wait_answered(target, &transfer_id, &invitation_id)
                    .await;
                Ok(())
            }
        };
        set_presence(h, other, routing::Presence::Away).await;
        (name, result)
    }

    /// Waits until the transfer or invitation is no longer pending.
    async fn wait_answered(&self, target: &str, transfer_id: &str, invitation_id: &str) {
        let h = self.h;
        switchboard_tests::eventually("the answer to be applied", WAIT, || async {
            if !invitation_id.is_empty() {
                let c = self.read(target).await;
                let pending = c.participants.iter().any(|p| {
                    p.invitation_id == invitation_id && p.state == Standing::Invited as i32
                });
                return (!pending).then_some(());
            }
            let transfers = h
                .conversations("supervisor")
                .list_transfers(conv::ListTransfersRequest {
                    conversation_id: target.to_owned(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .transfers;
            let pending = transfers.iter().any(|t| {
                t.id == transfer_id
                    && t.outcome == switchboard_proto::common::v1::AnswerOutcome::Pending as i32
            });
            (!pending).then_some(())
        })
        .await;
    }

    /// Every invariant, once the background work has settled: retried until they hold,
    /// failing with the last violation found.
    async fn check_invariants(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let violation = self.violation().await;
            match violation {
                None => return,
                Some(what) if tokio::time::Instant::now() >= deadline => self.fail(&what),
                Some(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    /// The first invariant that does not hold now, if any.
    async fn violation(&self) -> Option<String> {
        let mut convs = Vec::new();
        for id in &self.conversations {
            convs.push(self.read(id).await);
        }
        let mut held = [0i32; 2];
        for c in &convs {
            let present = |role: conv::ParticipantRole| -> Vec<&conv::Participant> {
                c.participants
                    .iter()
                    .filter(|p| p.state == Standing::Joined as i32 && p.role == role as i32)
                    .collect()
            };
            let owners = present(conv::ParticipantRole::Owner);
            if c.state == State::Open as i32 && !c.owner_agent_id.is_empty() {
                return Some(format!("OPEN {} has owner {}", c.id, c.owner_agent_id));
            }
            if owned_state(c.state) {
                if c.owner_agent_id.is_empty() {
                    return Some(format!("{} in state {} has no owner", c.id, c.state));
                }
                if owners.len() != 1 || owners[0].user_id != c.owner_agent_id {
                    return Some(format!(
                        "{} owned by {} has present owners {:?}",
                        c.id,
                        c.owner_agent_id,
                        owners.iter().map(|p| &p.user_id).collect::<Vec<_>>()
                    ));
                }
            } else if !owners.is_empty() {
                return Some(format!(
                    "{} in state {} keeps a present owner",
                    c.id, c.state
                ));
            }
            if !worked(c.state) {
                let helpers: Vec<&conv::Participant> = c
                    .participants
                    .iter()
                    .filter(|p| {
                        p.state == Standing::Invited as i32
                            || (p.state == Standing::Joined as i32
                                && (p.role == conv::ParticipantRole::Conference as i32
                                    || p.role == conv::ParticipantRole::Consultant as i32))
                    })
                    .collect();
                if !helpers.is_empty() {
                    return Some(format!(
                        "{} in state {} keeps invitations or helpers: {helpers:?}",
                        c.id, c.state
                    ));
                }
            }
            for (i, agent) in AGENTS.iter().enumerate() {
                let agent_id = self.id(agent);
                if owned_state(c.state) && c.owner_agent_id == agent_id {
                    held[i] += 1;
                }
                if present(conv::ParticipantRole::Conference)
                    .iter()
                    .any(|p| p.user_id == agent_id)
                {
                    held[i] += 1;
                }
            }
            // Events: complete, in order, each change of state legal.
            let events = self
                .h
                .conversations("supervisor")
                .list_conversation_events(conv::ListConversationEventsRequest {
                    conversation_id: c.id.clone(),
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .events;
            if let Some(problem) = event_log_problem(c, &events) {
                return Some(problem);
            }
            for pair in events.windows(2) {
                if !legal(pair[0].state, pair[1].state) {
                    return Some(format!(
                        "{}: event {} goes from state {} to {}",
                        c.id, pair[1].sequence, pair[0].state, pair[1].state
                    ));
                }
            }
        }
        for (i, agent) in AGENTS.iter().enumerate() {
            let used = agent_state(self.h, agent).await.capacity_used;
            if used != held[i] {
                return Some(format!("{agent} uses {used} units but holds {}", held[i]));
            }
            // Visibility.
            let agent_id = self.id(agent);
            for c in &convs {
                let takes_part = c
                    .participants
                    .iter()
                    .any(|p| p.user_id == agent_id && p.state == Standing::Joined as i32);
                let serves = queues_of(agent, &self.h.creds.queue_id, &self.second_queue);
                let should = (c.state == State::Open as i32
                    && c.owner_agent_id.is_empty()
                    && serves.contains(&c.queue_id.as_str()))
                    || (c.owner_agent_id == agent_id && c.state != State::Closed as i32)
                    || takes_part;
                let sees = self
                    .h
                    .conversations(agent)
                    .get_conversation(conv::GetConversationRequest {
                        conversation_id: c.id.clone(),
                        ..Default::default()
                    })
                    .await;
                match (&sees, should) {
                    (Ok(_), true) => {}
                    (Err(status), false) if status.code() == Code::NotFound => {}
                    (Ok(_), false) if c.state == State::Closed as i32 => {}
                    _ => {
                        return Some(format!(
                            "{agent} sees {} (state {}, owner {}): {:?}, should: {should}",
                            c.id,
                            c.state,
                            c.owner_agent_id,
                            sees.as_ref().map(|_| ()).map_err(|s| s.code())
                        ));
                    }
                }
            }
        }
        // Status labels: counted over the conversations not CLOSED.
        let counts = self
            .h
            .supervisor("supervisor")
            .count_conversations_by_status(conv::CountConversationsByStatusRequest::default())
            .await
            .ok()?
            .into_inner()
            .counts;
        for label in self.labels.iter().chain([&String::new()]) {
            let expected = convs
                .iter()
                .filter(|c| c.state != State::Closed as i32 && &c.status_label_id == label)
                .count() as i64;
            let counted = counts
                .iter()
                .find(|row| &row.status_label_id == label)
                .map_or(0, |row| row.open_conversations);
            if counted != expected {
                return Some(format!(
                    "label {label:?} counts {counted} open conversations, not {expected}"
                ));
            }
        }
        None
    }
}
