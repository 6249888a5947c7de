//! A supervisor's live view of a team through the gateway, on SQLite and PostgreSQL:
//! StreamAgentStates filtered by a team of the directory shows its members only, follows
//! their changes, and follows the team as the administrator changes it. An unknown or
//! malformed team is a clear error.

use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_agent_states_response::Update;
use switchboard_tests::flows::{WAIT, create_team, set_presence, set_teams};
use switchboard_tests::{Backend, Harness};
use tonic::{Code, Streaming};

switchboard_tests::on_each_backend!(a_supervisor_follows_a_team_as_it_changes);

async fn started(backend: &Backend) -> Harness {
    Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()))
}

async fn open(
    h: &Harness,
    queue_id: &str,
    team_id: &str,
) -> Result<Streaming<routing::StreamAgentStatesResponse>, tonic::Status> {
    h.queues("supervisor")
        .stream_agent_states(routing::StreamAgentStatesRequest {
            queue_id: queue_id.to_owned(),
            team_id: team_id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The next message other than a heartbeat.
async fn next(stream: &mut Streaming<routing::StreamAgentStatesResponse>) -> Update {
    // A team change shows within the refresh interval (5 s), well inside WAIT.
    tokio::time::timeout(WAIT, async {
        loop {
            let message = stream
                .message()
                .await
                .expect("the stream stays up")
                .expect("the stream does not end");
            match message.update.expect("every message says something") {
                Update::Heartbeat(_) => {}
                update => return update,
            }
        }
    })
    .await
    .expect("a message within the wait")
}

/// The snapshot's agents, by id.
async fn snapshot(stream: &mut Streaming<routing::StreamAgentStatesResponse>) -> Vec<String> {
    let mut agents = Vec::new();
    loop {
        match next(stream).await {
            Update::AgentState(state) => agents.push(state.agent_id),
            Update::SnapshotEnd(_) => break,
            other => panic!("a snapshot holds states only: {other:?}"),
        }
    }
    agents.sort();
    agents
}

/// The next state of `agent_id`, which must come before any other agent's.
async fn state_of(
    stream: &mut Streaming<routing::StreamAgentStatesResponse>,
    agent_id: &str,
) -> routing::AgentState {
    match next(stream).await {
        Update::AgentState(state) if state.agent_id == agent_id => state,
        other => panic!("expected {agent_id}'s state, got {other:?}"),
    }
}

async fn a_supervisor_follows_a_team_as_it_changes(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let agent2 = h.creds.user("agent2").id.clone();
    let team = create_team(&h, h.bearer("admin"), "Tier 1").await;
    set_teams(&h, h.bearer("admin"), &agent1, &[&team.id]).await;

    // The team's view holds agent1 only; the queue and team together, the same.
    let mut view = open(&h, "", &team.id).await.expect("team view");
    assert_eq!(snapshot(&mut view).await, vec![agent1.clone()]);
    let mut both = open(&h, &h.creds.queue_id, &team.id)
        .await
        .expect("queue and team view");
    assert_eq!(snapshot(&mut both).await, vec![agent1.clone()]);

    // agent2, outside the team, changes first; the view's next message is agent1's change.
    set_presence(&h, "agent2", routing::Presence::Available).await;
    set_presence(&h, "agent1", routing::Presence::Away).await;
    let state = state_of(&mut view, &agent1).await;
    assert_eq!(state.presence, routing::Presence::Away as i32);
    assert_eq!(
        state_of(&mut both, &agent1).await.presence,
        routing::Presence::Away as i32
    );

    // The administrator moves agent2 into the team: the view adds it within the refresh,
    // with its current state.
    set_teams(&h, h.bearer("admin"), &agent2, &[&team.id]).await;
    let state = state_of(&mut view, &agent2).await;
    assert_eq!(state.presence, routing::Presence::Available as i32);

    // ...and agent1 out of it: the view removes it.
    set_teams(&h, h.bearer("admin"), &agent1, &[]).await;
    match next(&mut view).await {
        Update::RemovedAgentId(id) => assert_eq!(id, agent1),
        other => panic!("expected agent1 removed, got {other:?}"),
    }
    // Its later changes stay out of the view; agent2's still come.
    set_presence(&h, "agent1", routing::Presence::Available).await;
    set_presence(&h, "agent2", routing::Presence::Away).await;
    let state = state_of(&mut view, &agent2).await;
    assert_eq!(state.presence, routing::Presence::Away as i32);

    // A stream opened now starts from the team as it is.
    let mut fresh = open(&h, "", &team.id).await.expect("team view");
    assert_eq!(snapshot(&mut fresh).await, vec![agent2.clone()]);

    // Bad input: an unknown team, a malformed id.
    let unknown = open(&h, "", &uuid::Uuid::new_v4().to_string())
        .await
        .expect_err("an unknown team");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let malformed = open(&h, "", "not-a-team")
        .await
        .expect_err("a malformed id");
    assert_eq!(malformed.code(), Code::InvalidArgument, "{malformed:?}");
    assert!(malformed.message().contains("team_id"), "{malformed:?}");

    drop((view, both, fresh));
    h.stop().await.expect("the suite stops cleanly");
}
