//! Presence rules through the gateway on SQLite and PostgreSQL. Busy when full: an
//! Available agent whose capacity units are all taken shows Busy (to itself, on its offer
//! stream and to supervisors) and Available again once a unit frees; a presence chosen by
//! hand stays. RONA: only the agent ends it, by Available or Away, or a logout.

use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update as OfferUpdate;
use switchboard_tests::flows::{
    WAIT, agent_state, chat_in, next_update, offer_stream, pending_offer, set_presence, start_chat,
    take, wait_for_capacity, web_chat_queue,
};
use switchboard_tests::{Backend, Harness, eventually, rid};

switchboard_tests::on_each_backend!(
    a_full_agent_shows_busy_until_a_unit_frees,
    rona_ends_only_by_the_agents_own_choice_or_a_logout,
);

async fn started(backend: &Backend) -> Harness {
    Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()))
}

/// The presence a supervisor sees for demo agent `handle` in ListAgentStates.
async fn listed_presence(h: &Harness, handle: &str) -> (i32, i32) {
    let agent_id = h.creds.user(handle).id.clone();
    let states = h
        .queues("supervisor")
        .list_agent_states(routing::ListAgentStatesRequest {
            queue_id: h.creds.queue_id.clone(),
            ..Default::default()
        })
        .await
        .expect("agent states")
        .into_inner()
        .agent_states;
    let state = states
        .into_iter()
        .find(|s| s.agent_id == agent_id)
        .expect("the agent is listed");
    (state.presence, state.chosen_presence)
}

async fn a_full_agent_shows_busy_until_a_unit_frees(backend: &Backend) {
    let h = started(backend).await;
    let available = routing::Presence::Available as i32;
    let busy = routing::Presence::Busy as i32;
    let total = agent_state(&h, "agent1").await.capacity_total;
    assert!(total > 0);
    let mut chats = Vec::new();
    for i in 0..total {
        let chat = start_chat(&h, &format!("full-{i}")).await;
        take(&h, "agent1", &chat.id).await;
        chats.push(chat);
        let units = i + 1;
        wait_for_capacity(&h, "agent1", units).await;
        let state = agent_state(&h, "agent1").await;
        let shown = if units == total { busy } else { available };
        assert_eq!(
            (state.presence, state.chosen_presence),
            (shown, available),
            "{units} of {total} units"
        );
    }
    assert_eq!(listed_presence(&h, "agent1").await, (busy, available));
    let full_since = agent_state(&h, "agent1").await.presence_change_time;

    // A unit frees: Available again, shown at once on the agent's stream.
    let mut offers = offer_stream(&h, "agent1").await;
    h.supervisor("supervisor")
        .force_close_conversation(conv::ForceCloseConversationRequest {
            request_id: rid(),
            conversation_id: chats[0].id.clone(),
            reason: String::new(),
        })
        .await
        .expect("force close");
    let freed_on_stream = next_update(&mut offers, "the freed unit", |update| match update {
        OfferUpdate::AgentState(state) if state.capacity_used == total - 1 => Some(state),
        _ => None,
    })
    .await;
    assert_eq!(freed_on_stream.presence, available, "{freed_on_stream:?}");
    let freed = agent_state(&h, "agent1").await;
    assert_eq!(
        (freed.presence, freed.chosen_presence),
        (available, available)
    );
    assert_ne!(freed.presence_change_time, full_since);

    // Chosen by hand: Away stays Away whether full or not, and so does Busy.
    let third = start_chat(&h, "full-again").await;
    take(&h, "agent1", &third.id).await;
    wait_for_capacity(&h, "agent1", total).await;
    set_presence(&h, "agent1", routing::Presence::Away).await;
    let away = routing::Presence::Away as i32;
    assert_eq!(listed_presence(&h, "agent1").await, (away, away));
    h.supervisor("supervisor")
        .force_close_conversation(conv::ForceCloseConversationRequest {
            request_id: rid(),
            conversation_id: third.id.clone(),
            reason: String::new(),
        })
        .await
        .expect("force close");
    wait_for_capacity(&h, "agent1", total - 1).await;
    assert_eq!(listed_presence(&h, "agent1").await, (away, away));
    set_presence(&h, "agent1", routing::Presence::Busy).await;
    eventually("agent1 Busy by hand", WAIT, || async {
        (listed_presence(&h, "agent1").await == (busy, busy)).then_some(())
    })
    .await;
    h.stop().await.expect("the suite stops cleanly");
}

/// Asks for `presence` for demo agent `agent` as `caller` (the agent itself or the
/// supervisor).
async fn set_presence_of(
    h: &Harness,
    caller: &str,
    agent: &str,
    presence: routing::Presence,
) -> Result<routing::AgentState, tonic::Status> {
    let agent_id = h.creds.user(agent).id.clone();
    h.agent(caller)
        .set_presence(routing::SetPresenceRequest {
            request_id: rid(),
            agent_id: if caller == agent {
                String::new()
            } else {
                agent_id
            },
            presence: presence as i32,
            reason: String::new(),
        })
        .await
        .map(|r| r.into_inner().agent_state.expect("agent state"))
}

/// Makes demo agent1 Available and lets the offer of a new chat in `queue_id` time out:
/// agent1 is in RONA on return.
async fn miss_an_offer(
    h: &Harness,
    queue_id: &str,
    offers: &mut tonic::Streaming<routing::StreamOffersResponse>,
    address: &str,
) {
    set_presence(h, "agent1", routing::Presence::Available).await;
    let chat = chat_in(h, queue_id, address).await;
    pending_offer(offers, &chat.id).await;
    eventually("agent1 in RONA", WAIT, || async {
        (agent_state(h, "agent1").await.presence == routing::Presence::Rona as i32).then_some(())
    })
    .await;
}

/// RONA ends only as its prompt offers: the agent itself chooses Available or Away. Any
/// other choice, and any change by a supervisor, is refused and changes nothing; a logout
/// (by the agent or a supervisor) always goes through.
async fn rona_ends_only_by_the_agents_own_choice_or_a_logout(backend: &Backend) {
    let h = started(backend).await;
    let quick = routing::Queue {
        offer_timeout: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let queue_id = web_chat_queue(&h, "Quick answers", quick, &["agent1"]).await;
    let mut offers = offer_stream(&h, "agent1").await;
    let rona = routing::Presence::Rona as i32;
    miss_an_offer(&h, &queue_id, &mut offers, "rona-1").await;

    let since = agent_state(&h, "agent1").await.presence_change_time;
    for (caller, presence) in [
        ("agent1", routing::Presence::Busy),
        ("agent1", routing::Presence::DoNotDisturb),
        ("supervisor", routing::Presence::Available),
        ("supervisor", routing::Presence::Away),
    ] {
        let refused = set_presence_of(&h, caller, "agent1", presence)
            .await
            .expect_err("refused while in RONA");
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{caller} {presence:?}"
        );
        assert!(refused.message().contains("RONA"), "{refused:?}");
        let state = agent_state(&h, "agent1").await;
        assert_eq!((state.presence, state.presence_change_time), (rona, since));
    }
    let back = set_presence_of(&h, "agent1", "agent1", routing::Presence::Away)
        .await
        .expect("the agent ends RONA with Away");
    assert_eq!(back.presence, routing::Presence::Away as i32);

    // Again in RONA: a supervisor logs the agent out, which is never blocked.
    miss_an_offer(&h, &queue_id, &mut offers, "rona-2").await;
    let out = set_presence_of(&h, "supervisor", "agent1", routing::Presence::Offline)
        .await
        .expect("a supervisor logs out an agent in RONA");
    assert_eq!(out.presence, routing::Presence::Offline as i32);
    drop(offers);
    h.stop().await.expect("the suite stops cleanly");
}
