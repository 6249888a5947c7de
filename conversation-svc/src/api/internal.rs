//! `switchboard.conversation.internal.v1.ConversationInternalService`, for routing-svc and
//! reporting-svc.

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::Stream;
use switchboard_proto::common::v1::SnapshotEnd;
use switchboard_proto::conversation::internal::v1 as ipb;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_server::ConversationInternalService;
use switchboard_proto::conversation::internal::v1::subscribe_response::Update;
use switchboard_proto::conversation::v1 as pb;
use switchboard_server_kit::db::{now_micros, timestamp_to_micros};
use switchboard_server_kit::idempotency::{self, Fingerprint, RequestKey};
use switchboard_server_kit::mask_pans;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::conversation::conference::{invitation_not_taken, join_invited};
use super::conversation::moves::return_to_queue;
use super::conversation::transfers::{accept_transfer, transfer_not_taken};
use super::conversation::{post_message, system_message};
use super::expiry::limit_micros;
use super::stream::{Waiter, Wake, heartbeat_now};
use super::{Shared, convert, optional_uuid, service_caller, text_field, uuid_field};
use crate::domain::access::ParticipantRole;
use crate::domain::logout::returns_on_logout;
use crate::domain::overflow::overflow_applies;
use crate::domain::state::{Action, transition};
use crate::error::{Error, Result};
use crate::store::{Conversation, Event, Mutation, Topic};
use switchboard_proto::common::v1::AnswerOutcome;
use switchboard_proto::routing::v1::OfferKind;
use switchboard_proto::routing::v1::offer::State as OfferState;

/// The request log's name of ReleaseOnLogout.
const RELEASE_ON_LOGOUT: &str =
    "/switchboard.conversation.internal.v1.ConversationInternalService/ReleaseOnLogout";

/// The request log's name of ApplyOverflow.
const APPLY_OVERFLOW: &str =
    "/switchboard.conversation.internal.v1.ConversationInternalService/ApplyOverflow";

/// The stored end code of a segment whose agent logged out.
const LOGGED_OUT: &str = "logged_out";

/// How many events Subscribe reads per query.
const SUBSCRIBE_BATCH: i64 = 500;

/// How long Subscribe waits for a missing sequence before moving past it. Sequences are
/// taken under a row lock at commit and never skipped, so this only guards against an
/// event row removed by hand.
const GAP_GRACE: Duration = Duration::from_secs(30);

/// Operations for the other services.
#[derive(Clone, Debug)]
pub struct InternalApi {
    ctx: Shared,
}

impl InternalApi {
    /// The service over `ctx`.
    pub fn new(ctx: Shared) -> InternalApi {
        InternalApi { ctx }
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<ipb::SubscribeResponse, Status>> + Send>>;

/// An internal call recorded under its request id: what it answered before, or its
/// transaction with the conversation locked.
enum Recorded<R> {
    Replayed(R),
    Fresh(Box<(Mutation, Conversation)>),
}

impl InternalApi {
    async fn apply(
        &self,
        request: Request<ipb::ApplyAssignmentRequest>,
    ) -> Result<ipb::ApplyAssignmentResponse> {
        service_caller(&request)?;
        let req = request.into_inner();
        let tenant_id = uuid_field("tenant_id", &req.tenant_id)?;
        let conversation_id = uuid_field("conversation_id", &req.conversation_id)?;
        let agent_id = uuid_field("agent_id", &req.agent_id)?;
        let offer_id = uuid_field("offer_id", &req.offer_id)?;
        text_field("agent_display_name", &req.agent_display_name, 0, 200)?;
        let agent_display_name = mask_pans(&req.agent_display_name).into_owned();
        let queue_id = optional_uuid("queue_id", &req.queue_id)?;
        let invitation = match OfferKind::try_from(req.offer_kind) {
            Ok(OfferKind::Unspecified) => false,
            Ok(OfferKind::Consult | OfferKind::Conference) => true,
            _ => {
                return Err(Error::invalid(
                    "offer_kind",
                    "must be CONSULT, CONFERENCE or unset",
                ));
            }
        };
        if invitation {
            return self
                .join(
                    &tenant_id,
                    &conversation_id,
                    &offer_id,
                    &agent_id,
                    &agent_display_name,
                )
                .await;
        }
        let start_reason = match pb::AssignmentSource::try_from(req.assignment_source) {
            Ok(pb::AssignmentSource::Unspecified) => {
                convert::assignment_code(pb::AssignmentSource::QueueOffer)
            }
            Ok(
                source @ (pb::AssignmentSource::QueueOffer
                | pb::AssignmentSource::Claim
                | pb::AssignmentSource::Transfer),
            ) => convert::assignment_code(source),
            _ => None,
        }
        .ok_or_else(|| {
            Error::invalid(
                "assignment_source",
                "must be QUEUE_OFFER, CLAIM or TRANSFER",
            )
        })?;

        let mut m = self.ctx.store.begin().await?;
        let mut conv = m
            .conversation_for_update(&tenant_id, &conversation_id)
            .await?
            .ok_or_else(|| Error::conversation_not_found(&conversation_id))?;
        if let Some(applied) = m.assignment_by_offer(&offer_id).await? {
            if applied.conversation_id != conversation_id || applied.tenant_id != tenant_id {
                return Err(Error::wrong_state(
                    &conversation_id,
                    format!("offer {offer_id} was applied to another conversation"),
                ));
            }
            // A retry: the assignment is already there; answer with the conversation now.
            return Ok(ipb::ApplyAssignmentResponse {
                conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
            });
        }
        if !req.enqueue_key.is_empty()
            && let Some(current) = m.enqueue_key(&conversation_id).await?
            && current != req.enqueue_key
        {
            // routing-svc offered it before hearing that it was moved, closed or queued
            // again; it releases the units on this answer.
            return Err(Error::wrong_state(
                &conversation_id,
                format!("offer {offer_id} was made before the conversation moved on"),
            ));
        }
        if start_reason == "transfer" {
            let now = now_micros();
            let segment = accept_transfer(
                &mut m,
                &mut conv,
                &offer_id,
                &agent_id,
                &agent_display_name,
                now,
            )
            .await?;
            // The receiving queue's wrap-up time limit applies from now on.
            m.set_wrap_up_limit(
                &conversation_id,
                limit_micros(req.wrap_up_time_limit.as_ref()),
            )
            .await?;
            m.record_assignment(&offer_id, &conv, &agent_id, &segment.id, now)
                .await?;
            let response = ipb::ApplyAssignmentResponse {
                conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
            };
            m.commit(None, &response).await?;
            info!(
                conversation_id = %conversation_id,
                agent_id = %agent_id,
                offer_id = %offer_id,
                "transfer accepted"
            );
            return Ok(response);
        }
        let next = transition(conv.state, Action::Assign)
            .map_err(|e| Error::wrong_state(&conversation_id, e))?;
        if let Some(owner) = conv.owner() {
            return Err(Error::wrong_state(
                &conversation_id,
                format!("already owned by agent {owner}"),
            ));
        }

        let now = now_micros();
        let previous = conv.last_owner_agent_id.clone();
        if let Some(queue_id) = queue_id {
            conv.queue_id = queue_id;
        }
        conv.state = next;
        conv.owner_agent_id = agent_id.clone();
        conv.owner_display_name = agent_display_name.clone();
        conv.last_owner_agent_id = agent_id.clone();
        conv.update_time = now;
        let queue = conv.queue_id.clone();
        let segment = m
            .start_segment(&mut conv, &agent_id, &queue, start_reason, now)
            .await?;
        m.add_participant(
            &mut conv,
            &agent_id,
            &agent_display_name,
            ParticipantRole::Owner,
            now,
        )
        .await?;
        m.save_conversation(&conv).await?;
        m.set_wrap_up_limit(
            &conversation_id,
            limit_micros(req.wrap_up_time_limit.as_ref()),
        )
        .await?;
        m.record_assignment(&offer_id, &conv, &agent_id, &segment.id, now)
            .await?;
        let mut assigned = Event::about(&conv, pb::EventType::Assigned as i32, &agent_id, now);
        assigned.previous_agent_id = previous;
        assigned.detail = start_reason.to_owned();
        m.event(assigned);
        let name = if agent_display_name.trim().is_empty() {
            "An agent"
        } else {
            agent_display_name.as_str()
        };
        let notice = system_message(format!("{name} joined the conversation"));
        post_message(&mut m, &mut conv, notice, "", now).await?;
        let response = ipb::ApplyAssignmentResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        m.commit(None, &response).await?;
        info!(
            conversation_id = %conversation_id,
            agent_id = %agent_id,
            offer_id = %offer_id,
            segment = segment.ordinal,
            "conversation assigned"
        );
        Ok(response)
    }

    /// ApplyAssignment for an accepted invitation: the agent joins as a consultant or a
    /// conference agent.
    async fn join(
        &self,
        tenant_id: &str,
        conversation_id: &str,
        offer_id: &str,
        agent_id: &str,
        agent_display_name: &str,
    ) -> Result<ipb::ApplyAssignmentResponse> {
        let mut m = self.ctx.store.begin().await?;
        let mut conv = m
            .conversation_for_update(tenant_id, conversation_id)
            .await?
            .ok_or_else(|| Error::conversation_not_found(conversation_id))?;
        join_invited(
            &mut m,
            &mut conv,
            offer_id,
            agent_id,
            agent_display_name,
            now_micros(),
        )
        .await?;
        let response = ipb::ApplyAssignmentResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        m.commit(None, &response).await?;
        info!(conversation_id, agent_id, offer_id, "invitation accepted");
        Ok(response)
    }

    async fn resolve(
        &self,
        request: Request<ipb::ResolveOfferRequest>,
    ) -> Result<ipb::ResolveOfferResponse> {
        service_caller(&request)?;
        let req = request.into_inner();
        uuid_field("tenant_id", &req.tenant_id)?;
        uuid_field("conversation_id", &req.conversation_id)?;
        let offer_id = uuid_field("offer_id", &req.offer_id)?;
        text_field("reject_reason", &req.reject_reason, 0, 2000)?;
        let outcome = match OfferState::try_from(req.state) {
            Ok(OfferState::Rejected) => AnswerOutcome::Rejected,
            Ok(OfferState::TimedOut) => AnswerOutcome::TimedOut,
            Ok(OfferState::Withdrawn) => AnswerOutcome::Withdrawn,
            _ => {
                return Err(Error::invalid(
                    "state",
                    "must be REJECTED, TIMED_OUT or WITHDRAWN",
                ));
            }
        };
        let mut m = self.ctx.store.begin().await?;
        let now = now_micros();
        if !invitation_not_taken(&mut m, &offer_id, outcome, &req.reject_reason, now).await? {
            transfer_not_taken(&mut m, &offer_id, outcome, &req.reject_reason, now).await?;
        }
        let committed = m.commit(None, &()).await?;
        self.ctx.dispatch(&committed);
        Ok(ipb::ResolveOfferResponse {})
    }

    /// Starts the call recorded under `key` on conversation `conversation_id` of the key's
    /// tenant; NOT_FOUND when there is no such conversation.
    async fn begin_recorded<R: prost::Message + Default>(
        &self,
        key: RequestKey<'_>,
        conversation_id: &str,
    ) -> Result<Recorded<R>> {
        let mut m = self.ctx.store.begin().await?;
        if let Some(response) = m.replay(key).await? {
            return Ok(Recorded::Replayed(response));
        }
        let conv = m
            .conversation_for_update(key.tenant_id, conversation_id)
            .await?
            .ok_or_else(|| Error::conversation_not_found(conversation_id))?;
        Ok(Recorded::Fresh(Box::new((m, conv))))
    }

    /// Returns a conversation to its queue after its owner logged out (see the RPC): in one
    /// transaction, recorded under the request's id so that routing-svc's retries are
    /// answered alike. A conversation the agent no longer owns is left alone.
    async fn release_on_logout(
        &self,
        request: Request<ipb::ReleaseOnLogoutRequest>,
    ) -> Result<ipb::ReleaseOnLogoutResponse> {
        let service = service_caller(&request)?;
        let req = request.into_inner();
        let tenant_id = uuid_field("tenant_id", &req.tenant_id)?;
        let conversation_id = uuid_field("conversation_id", &req.conversation_id)?;
        let agent_id = uuid_field("agent_id", &req.agent_id)?;
        let request_id = uuid_field("request_id", &req.request_id)?;
        let logout_by = optional_uuid("logout_by", &req.logout_by)?.unwrap_or_default();
        let logout_time = req
            .logout_time
            .as_ref()
            .map(timestamp_to_micros)
            .ok_or_else(|| Error::invalid("logout_time", "is required"))?;
        let caller = idempotency::caller_of(&service);
        let key = RequestKey {
            tenant_id: &tenant_id,
            caller: &caller,
            method: RELEASE_ON_LOGOUT,
            request_id: &request_id,
            fingerprint: Fingerprint::of(&req),
        };
        let (mut m, mut conv) = match self.begin_recorded(key, &conversation_id).await? {
            Recorded::Replayed(response) => return Ok(response),
            Recorded::Fresh(fresh) => *fresh,
        };
        let owned_since = match conv.owner() {
            Some(owner) if owner == agent_id => m
                .segment(&conversation_id, &conv.current_segment_id)
                .await?
                .map_or(0, |segment| segment.start_time),
            _ => 0,
        };
        if let Err(stays) = returns_on_logout(
            conv.state,
            conv.owner(),
            owned_since,
            &agent_id,
            logout_time,
        ) {
            let response = ipb::ReleaseOnLogoutResponse { released: false };
            m.commit(Some(key), &response).await?;
            info!(
                conversation_id = %conversation_id,
                agent_id = %agent_id,
                why = %stays,
                "conversation stays after its agent logged out"
            );
            return Ok(response);
        }
        return_to_queue(&mut m, &mut conv, LOGGED_OUT, &logout_by, now_micros()).await?;
        let response = ipb::ReleaseOnLogoutResponse { released: true };
        let committed = m.commit(Some(key), &response).await?;
        self.ctx.dispatch(&committed);
        info!(
            conversation_id = %conversation_id,
            agent_id = %agent_id,
            by = %logout_by,
            queue_id = %conv.queue_id,
            "conversation returned to its queue on logout"
        );
        Ok(response)
    }

    /// Moves a waiting conversation to the queue routing-svc overflowed it into (see the
    /// RPC): in one transaction, recorded under the request's id so that routing-svc's
    /// retries are answered alike. One that moved on since is left alone.
    async fn apply_overflow(
        &self,
        request: Request<ipb::ApplyOverflowRequest>,
    ) -> Result<ipb::ApplyOverflowResponse> {
        let service = service_caller(&request)?;
        let req = request.into_inner();
        let tenant_id = uuid_field("tenant_id", &req.tenant_id)?;
        let conversation_id = uuid_field("conversation_id", &req.conversation_id)?;
        let request_id = uuid_field("request_id", &req.request_id)?;
        let from_queue_id = uuid_field("from_queue_id", &req.from_queue_id)?;
        let to_queue_id = uuid_field("to_queue_id", &req.to_queue_id)?;
        let to_program_id = optional_uuid("to_program_id", &req.to_program_id)?;
        text_field("enqueue_key", &req.enqueue_key, 1, 200)?;
        let caller = idempotency::caller_of(&service);
        let key = RequestKey {
            tenant_id: &tenant_id,
            caller: &caller,
            method: APPLY_OVERFLOW,
            request_id: &request_id,
            fingerprint: Fingerprint::of(&req),
        };
        let (mut m, mut conv) = match self.begin_recorded(key, &conversation_id).await? {
            Recorded::Replayed(response) => return Ok(response),
            Recorded::Fresh(fresh) => *fresh,
        };
        let placement = m.enqueue_key(&conversation_id).await?;
        if let Err(ignored) = overflow_applies(
            conv.state,
            conv.owner(),
            placement.as_deref(),
            &req.enqueue_key,
            &conv.queue_id,
            &to_queue_id,
        ) {
            let response = ipb::ApplyOverflowResponse { applied: false };
            m.commit(Some(key), &response).await?;
            info!(
                conversation_id = %conversation_id,
                queue_id = %to_queue_id,
                why = %ignored,
                "queue overflow not applied"
            );
            return Ok(response);
        }
        let now = now_micros();
        let previous_queue = std::mem::replace(&mut conv.queue_id, to_queue_id.clone());
        if let Some(program_id) = to_program_id {
            conv.program_id = program_id;
        }
        conv.update_time = now;
        m.save_conversation(&conv).await?;
        // The system moved it: no actor.
        let mut changed = Event::about(&conv, pb::EventType::QueueChanged as i32, "", now);
        changed.previous_queue_id = previous_queue;
        changed.detail = convert::queue_change_code(pb::QueueChangeReason::Overflow).to_owned();
        m.event(changed);
        let response = ipb::ApplyOverflowResponse { applied: true };
        m.commit(Some(key), &response).await?;
        info!(
            conversation_id = %conversation_id,
            from_queue = %from_queue_id,
            queue_id = %to_queue_id,
            "conversation overflowed to another queue"
        );
        Ok(response)
    }

    async fn subscribe(&self, request: Request<ipb::SubscribeRequest>) -> Result<SubscribeStream> {
        service_caller(&request)?;
        let after = request.get_ref().after_sequence;
        if after < 0 {
            return Err(Error::invalid("after_sequence", "must not be negative"));
        }
        let store = self.ctx.store.clone();
        let heartbeat = self.ctx.heartbeat;
        let mut waiter = Waiter::new(store.changes().watch([Topic::Log]), self.ctx.stop.clone());
        let stream = async_stream::try_stream! {
            let mut cursor = after;
            let mut gap_since: Option<Instant> = None;
            let mut caught_up = false;
            let mut last_sent = Instant::now();
            loop {
                let events = store
                    .events_after(cursor, SUBSCRIBE_BATCH)
                    .await
                    .map_err(Status::from)?;
                let full = events.len() as i64 == SUBSCRIBE_BATCH;
                let mut gap = false;
                for event in events {
                    if event.sequence != cursor + 1 {
                        let since = *gap_since.get_or_insert_with(Instant::now);
                        if since.elapsed() < GAP_GRACE {
                            gap = true;
                            break;
                        }
                        warn!(
                            missing_from = cursor + 1,
                            next = event.sequence,
                            "event sequence gap did not fill; moving on"
                        );
                    }
                    gap_since = None;
                    cursor = event.sequence;
                    last_sent = Instant::now();
                    yield ipb::SubscribeResponse {
                        update: Some(Update::Entry(ipb::LogEntry {
                            log_sequence: event.sequence,
                            event: Some(convert::event(&event)),
                        })),
                    };
                }
                if !caught_up && !full && !gap {
                    caught_up = true;
                    last_sent = Instant::now();
                    yield ipb::SubscribeResponse {
                        update: Some(Update::CaughtUp(SnapshotEnd {})),
                    };
                }
                if waiter.stopping() {
                    break;
                }
                if gap || !full {
                    match waiter.wait_until((last_sent + heartbeat).into()).await {
                        Wake::Changed => {}
                        Wake::Quiet => {
                            last_sent = Instant::now();
                            yield ipb::SubscribeResponse {
                                update: Some(Update::Heartbeat(heartbeat_now())),
                            };
                        }
                        Wake::Stopping => break,
                    }
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

#[tonic::async_trait]
impl ConversationInternalService for InternalApi {
    async fn apply_assignment(
        &self,
        request: Request<ipb::ApplyAssignmentRequest>,
    ) -> Result<Response<ipb::ApplyAssignmentResponse>, Status> {
        self.apply(request)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn resolve_offer(
        &self,
        request: Request<ipb::ResolveOfferRequest>,
    ) -> Result<Response<ipb::ResolveOfferResponse>, Status> {
        self.resolve(request)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn release_on_logout(
        &self,
        request: Request<ipb::ReleaseOnLogoutRequest>,
    ) -> Result<Response<ipb::ReleaseOnLogoutResponse>, Status> {
        InternalApi::release_on_logout(self, request)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn apply_overflow(
        &self,
        request: Request<ipb::ApplyOverflowRequest>,
    ) -> Result<Response<ipb::ApplyOverflowResponse>, Status> {
        InternalApi::apply_overflow(self, request)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<ipb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        InternalApi::subscribe(self, request)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}
