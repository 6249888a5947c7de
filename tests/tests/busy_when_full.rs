//! Busy when full, through the gateway on SQLite and PostgreSQL: an Available agent whose
//! capacity units are all taken shows Busy (to itself, on its offer stream and to
//! supervisors) and Available again once a unit frees; a presence chosen by hand stays.

use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update as OfferUpdate;
use switchboard_tests::flows::{
    WAIT, agent_state, next_update, offer_stream, set_presence, start_chat, take, wait_for_capacity,
};
use switchboard_tests::{Backend, Harness, eventually, rid};

switchboard_tests::on_each_backend!(a_full_agent_shows_busy_until_a_unit_frees);

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
