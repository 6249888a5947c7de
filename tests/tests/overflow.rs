//! Queue overflow through the gateway on SQLite and PostgreSQL: a conversation that waits
//! in a queue longer than its overflow_after moves to the overflow queue, keeping its wait,
//! and is offered to that queue's agents at once; conversation-svc shows it in the new queue
//! with a QUEUE_CHANGED event of reason OVERFLOW. A channel the overflow queue does not take
//! stays behind, and a conversation under offer moves only once the offer ends.

use std::time::Duration;

use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::routing::v1 as routing;
use switchboard_tests::flows::{
    WAIT, chat_in, events, offer_stream, pending_offer, pending_offers, serve_queues, set_presence,
    start_conversation_in, wait_for_state, wait_for_waiting, web_chat_queue,
};
use switchboard_tests::{Backend, Harness, eventually, rid};

switchboard_tests::on_each_backend!(
    a_conversation_waiting_too_long_moves_to_the_overflow_queue,
    a_pending_offer_holds_the_overflow_until_it_ends,
    overflow_set_by_an_update_moves_work_already_waiting,
);

/// The front line's wait before overflow: short, to keep the tests fast.
const OVERFLOW_AFTER: Duration = Duration::from_secs(1);

async fn started(backend: &Backend) -> Harness {
    Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()))
}

/// A queue "Front line" of the demo program taking web chat and SMS, overflowing to
/// `overflow` after [`OVERFLOW_AFTER`], each agent offered at most `max_open` at a time
/// (0: no limit).
async fn front_line(h: &Harness, overflow: &str, max_open: i32) -> String {
    h.queues("admin")
        .create_queue(routing::CreateQueueRequest {
            request_id: rid(),
            queue: Some(routing::Queue {
                program_id: h.creds.program_id.clone(),
                display_name: "Front line".into(),
                accepted_channels: vec![Channel::Webchat as i32, Channel::Sms as i32],
                max_open_per_agent: max_open,
                offer_timeout: Some(prost_types::Duration {
                    seconds: 300,
                    nanos: 0,
                }),
                overflow_queue_id: overflow.to_owned(),
                overflow_after: Some(prost_types::Duration {
                    seconds: OVERFLOW_AFTER.as_secs() as i64,
                    nanos: 0,
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create the front line")
        .into_inner()
        .queue
        .expect("queue")
        .id
}

/// The conversation as demo user `handle` reads it.
async fn conversation(
    h: &Harness,
    handle: &str,
    conversation_id: &str,
) -> Result<conv::Conversation, tonic::Status> {
    Ok(h.conversations(handle)
        .get_conversation(conv::GetConversationRequest {
            conversation_id: conversation_id.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .conversation
        .expect("conversation"))
}

/// The conversation once conversation-svc has it in queue `queue_id`.
async fn wait_for_queue(h: &Harness, conversation_id: &str, queue_id: &str) -> conv::Conversation {
    eventually(
        &format!("conversation {conversation_id} in queue {queue_id}"),
        WAIT,
        || async {
            let c = conversation(h, "supervisor", conversation_id).await.ok()?;
            (c.queue_id == queue_id).then_some(c)
        },
    )
    .await
}

/// The QUEUE_CHANGED events of a conversation.
async fn queue_changes(h: &Harness, conversation_id: &str) -> Vec<conv::ConversationEvent> {
    events(h, "supervisor", conversation_id)
        .await
        .into_iter()
        .filter(|e| e.event_type == conv::EventType::QueueChanged as i32)
        .collect()
}

/// Microseconds of a timestamp.
fn micros(ts: Option<&prost_types::Timestamp>) -> i64 {
    let ts = ts.expect("timestamp set");
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000
}

async fn a_conversation_waiting_too_long_moves_to_the_overflow_queue(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let overflow = web_chat_queue(&h, "Overflow", routing::Queue::default(), &[]).await;
    let front = front_line(&h, &overflow, 0).await;
    // Nobody serves the front line; agent1 serves the overflow queue only.
    serve_queues(&h, "agent1", &[&overflow]).await;
    let mut offers = offer_stream(&h, "agent1").await;
    set_presence(&h, "agent1", routing::Presence::Available).await;

    // The SMS conversation waits in routing before the chat is created, so it falls due
    // first: once the chat has moved, the SMS conversation has been looked at too.
    let sms = start_conversation_in(&h, h.bot(), &front, Channel::Sms, "+15550100").await;
    wait_for_waiting(&h, &front, 1).await;
    let chat = chat_in(&h, &front, "overflow-chat").await;

    let offer = pending_offer(&mut offers, &chat.id).await;
    assert_eq!(offer.queue_id, overflow, "offered from the overflow queue");
    assert_eq!(
        offer.wait_start_time, chat.create_time,
        "the wait carries over"
    );
    let waited = micros(offer.create_time.as_ref()) - micros(chat.create_time.as_ref());
    assert!(
        waited >= OVERFLOW_AFTER.as_micros() as i64,
        "offered after the front line's wait, not {waited} µs into it"
    );

    let moved = wait_for_queue(&h, &chat.id, &overflow).await;
    assert_eq!(moved.state, State::Open as i32);
    let changes = queue_changes(&h, &chat.id).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].previous_queue_id, front);
    assert_eq!(changes[0].queue_id, overflow);
    assert_eq!(
        changes[0].queue_change_reason,
        conv::QueueChangeReason::Overflow as i32
    );
    assert!(changes[0].actor_id.is_empty(), "the system moved it");
    // The overflow queue's agent sees it now that it waits there.
    eventually("agent1 sees the moved chat", WAIT, || async {
        conversation(&h, "agent1", &chat.id).await.ok()
    })
    .await;

    // The offer from the overflow queue still applies after the move.
    h.agent("agent1")
        .accept_offer(routing::AcceptOfferRequest {
            request_id: rid(),
            offer_id: offer.id,
        })
        .await
        .expect("agent1 accepts");
    let taken = wait_for_state(&h, "agent1", &chat.id, State::Active).await;
    assert_eq!(taken.owner_agent_id, agent1);
    assert_eq!(taken.queue_id, overflow);

    // The overflow queue takes no SMS: that conversation stays in the front line.
    wait_for_waiting(&h, &front, 1).await;
    let stayed = conversation(&h, "supervisor", &sms.id)
        .await
        .expect("the SMS conversation");
    assert_eq!(stayed.queue_id, front);
    assert_eq!(stayed.state, State::Open as i32);
    assert!(queue_changes(&h, &sms.id).await.is_empty());
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_pending_offer_holds_the_overflow_until_it_ends(backend: &Backend) {
    let h = started(backend).await;
    let agent2 = h.creds.user("agent2").id.clone();
    let overflow = web_chat_queue(&h, "Overflow", routing::Queue::default(), &[]).await;
    // agent2 serves the front line, one conversation at a time; agent1 the overflow queue.
    let front = front_line(&h, &overflow, 1).await;
    serve_queues(&h, "agent2", &[&front]).await;
    serve_queues(&h, "agent1", &[&overflow]).await;
    let mut front_offers = offer_stream(&h, "agent2").await;
    set_presence(&h, "agent2", routing::Presence::Available).await;
    let mut overflow_offers = offer_stream(&h, "agent1").await;
    set_presence(&h, "agent1", routing::Presence::Available).await;

    let held = chat_in(&h, &front, "overflow-held").await;
    let offer = pending_offer(&mut front_offers, &held.id).await;
    assert_eq!(offer.queue_id, front);
    // A later chat nobody in the front line can take moves on; the held one, due earlier,
    // stays while its offer is pending.
    let later = chat_in(&h, &front, "overflow-later").await;
    let moved = pending_offer(&mut overflow_offers, &later.id).await;
    assert_eq!(moved.queue_id, overflow);
    let still = conversation(&h, "supervisor", &held.id)
        .await
        .expect("the held chat");
    assert_eq!(still.queue_id, front);
    let pending = pending_offers(&h, &held.id).await.expect("offers");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].agent_id, agent2);
    assert!(queue_changes(&h, &held.id).await.is_empty());

    // Once agent2 turns it down it is long due: it moves and is offered to agent1.
    h.agent("agent2")
        .reject_offer(routing::RejectOfferRequest {
            request_id: rid(),
            offer_id: offer.id,
            reason: "busy".into(),
        })
        .await
        .expect("agent2 rejects");
    let offered = pending_offer(&mut overflow_offers, &held.id).await;
    assert_eq!(offered.queue_id, overflow);
    assert_eq!(offered.wait_start_time, held.create_time);
    wait_for_queue(&h, &held.id, &overflow).await;
    let changes = queue_changes(&h, &held.id).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].previous_queue_id, front);
    h.stop().await.expect("the suite stops cleanly");
}

async fn overflow_set_by_an_update_moves_work_already_waiting(backend: &Backend) {
    let h = started(backend).await;
    let backup = web_chat_queue(&h, "Backup", routing::Queue::default(), &[]).await;
    let quiet = web_chat_queue(&h, "Quiet", routing::Queue::default(), &[]).await;
    let chat = chat_in(&h, &quiet, "overflow-update").await;
    wait_for_waiting(&h, &quiet, 1).await;

    // The queue had no overflow when the chat entered it; setting one applies to it, its
    // wait counted from when it entered.
    h.queues("admin")
        .update_queue(routing::UpdateQueueRequest {
            request_id: rid(),
            queue: Some(routing::Queue {
                id: quiet.clone(),
                overflow_queue_id: backup.clone(),
                overflow_after: Some(prost_types::Duration {
                    seconds: OVERFLOW_AFTER.as_secs() as i64,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["overflow_queue_id".into(), "overflow_after".into()],
            }),
        })
        .await
        .expect("set the overflow");
    let moved = wait_for_queue(&h, &chat.id, &backup).await;
    assert_eq!(moved.state, State::Open as i32);
    wait_for_waiting(&h, &backup, 1).await;
    wait_for_waiting(&h, &quiet, 0).await;
    let changes = queue_changes(&h, &chat.id).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        changes[0].queue_change_reason,
        conv::QueueChangeReason::Overflow as i32
    );
    h.stop().await.expect("the suite stops cleanly");
}
