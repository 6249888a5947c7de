//! A supervisor's dashboard of ongoing conversations, through the gateway on SQLite and
//! PostgreSQL: the snapshot and its end, a new conversation, an assignment, a force close,
//! filters that a change leaves, another tenant's traffic, and who may watch.
//!
//! The suite runs with the default heartbeat of 15 s, too slow for these tests to wait on;
//! conversation-svc's own tests (tests/grpc.rs) check the heartbeat with 300 ms.

use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::conversation::v1::stream_ongoing_conversations_response::Update;
use switchboard_tests::flows::{WAIT, set_up_web_chat, start_chat, start_chat_in, take};
use switchboard_tests::{Backend, Harness, rid};
use tokio_stream::StreamExt;
use tonic::Code;

switchboard_tests::on_each_backend!(
    a_supervisor_sees_ongoing_conversations_change_and_close,
    filters_drop_what_leaves_them_and_only_supervisors_watch,
);

async fn started(backend: &Backend) -> Harness {
    Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()))
}

/// An open dashboard stream and everything it sent besides heartbeats.
struct Dashboard {
    stream: tonic::Streaming<conv::StreamOngoingConversationsResponse>,
    tenant_id: String,
}

impl Dashboard {
    async fn open(h: &Harness, request: conv::StreamOngoingConversationsRequest) -> Dashboard {
        let stream = h
            .supervisor("supervisor")
            .stream_ongoing_conversations(request)
            .await
            .expect("the supervisor streams ongoing conversations")
            .into_inner();
        Dashboard {
            stream,
            tenant_id: h.creds.tenant_id.clone(),
        }
    }

    /// The next update that is not a heartbeat, within [`WAIT`]. Every conversation it
    /// carries is of the supervisor's tenant and never CLOSED.
    async fn next(&mut self) -> Update {
        loop {
            let message = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a dashboard update in time")
                .expect("the dashboard stream stays open")
                .expect("dashboard stream ok");
            match message.update.expect("every message carries an update") {
                Update::Heartbeat(_) => continue,
                Update::Conversation(c) => {
                    assert_eq!(c.tenant_id, self.tenant_id, "another tenant's conversation");
                    assert_ne!(c.state, State::Closed as i32, "a CLOSED one: {c:?}");
                    return Update::Conversation(c);
                }
                update => return update,
            }
        }
    }

    /// The conversations of the snapshot, up to and including its end.
    async fn snapshot(&mut self) -> Vec<conv::Conversation> {
        let mut held = Vec::new();
        loop {
            match self.next().await {
                Update::Conversation(c) => held.push(c),
                Update::SnapshotEnd(_) => return held,
                other => panic!("in the snapshot: {other:?}"),
            }
        }
    }

    /// Reads until conversation `id` arrives as `accept` wants it; a removal of it first
    /// fails the test.
    async fn until(
        &mut self,
        id: &str,
        accept: impl Fn(&conv::Conversation) -> bool,
    ) -> conv::Conversation {
        loop {
            match self.next().await {
                Update::Conversation(c) if c.id == id && accept(&c) => return c,
                Update::RemovedConversationId(removed) => {
                    assert_ne!(removed, id, "{id} removed while waiting for it")
                }
                Update::SnapshotEnd(_) => panic!("a second snapshot end"),
                _ => {}
            }
        }
    }

    /// Reads until conversation `id` is removed; returns what came for it meanwhile.
    async fn until_removed(&mut self, id: &str) -> Vec<conv::Conversation> {
        let mut before = Vec::new();
        loop {
            match self.next().await {
                Update::RemovedConversationId(removed) if removed == id => return before,
                Update::Conversation(c) if c.id == id => before.push(c),
                Update::SnapshotEnd(_) => panic!("a second snapshot end"),
                _ => {}
            }
        }
    }
}

fn everything() -> conv::StreamOngoingConversationsRequest {
    conv::StreamOngoingConversationsRequest::default()
}

async fn a_supervisor_sees_ongoing_conversations_change_and_close(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let waiting = start_chat(&h, "ongoing-before").await;

    // The snapshot holds what is open, then says it is complete.
    let mut dashboard = Dashboard::open(&h, everything()).await;
    let snapshot = dashboard.snapshot().await;
    let held = snapshot
        .iter()
        .find(|c| c.id == waiting.id)
        .expect("the open conversation is in the snapshot");
    assert_eq!(held.state, State::Open as i32);
    assert!(
        held.bot_transcript.is_empty() && held.pre_chat_data.is_empty(),
        "BASIC view"
    );

    // A new conversation appears.
    let chat = start_chat(&h, "ongoing-new").await;
    dashboard
        .until(&chat.id, |c| c.state == State::Open as i32)
        .await;

    // An agent takes it: ACTIVE with its owner.
    take(&h, "agent1", &chat.id).await;
    let active = dashboard
        .until(&chat.id, |c| c.state == State::Active as i32)
        .await;
    assert_eq!(active.owner_agent_id, agent1);
    assert!(!active.owner_display_name.is_empty());
    assert!(
        active.participants.iter().any(|p| p.user_id == agent1),
        "{active:?}"
    );

    // A supervisor force closes it: it leaves the dashboard.
    h.supervisor("supervisor")
        .force_close_conversation(conv::ForceCloseConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            reason: "test".into(),
        })
        .await
        .expect("force close");
    dashboard.until_removed(&chat.id).await;

    // Another tenant's conversation never shows; the demo tenant's next one does, and the
    // stream checks every conversation it carries is of the demo tenant.
    let foreign = foreign_conversation(&h).await;
    let next = start_chat(&h, "ongoing-after").await;
    dashboard.until(&next.id, |_| true).await;
    assert_ne!(foreign.id, next.id);

    // On reconnect the snapshot is what is ongoing now: the closed one is gone.
    drop(dashboard);
    let mut again = Dashboard::open(&h, everything()).await;
    let ids: Vec<String> = again.snapshot().await.into_iter().map(|c| c.id).collect();
    assert!(
        ids.contains(&waiting.id) && ids.contains(&next.id),
        "{ids:?}"
    );
    assert!(
        !ids.contains(&chat.id) && !ids.contains(&foreign.id),
        "{ids:?}"
    );
    h.stop().await.expect("clean stop");
}

async fn filters_drop_what_leaves_them_and_only_supervisors_watch(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();

    // Only OPEN conversations: one that becomes ACTIVE is removed.
    let mut open_only = Dashboard::open(
        &h,
        conv::StreamOngoingConversationsRequest {
            states: vec![State::Open as i32],
            ..Default::default()
        },
    )
    .await;
    assert!(open_only.snapshot().await.is_empty(), "nothing open yet");
    // Only agent1's conversations.
    let mut owned = Dashboard::open(
        &h,
        conv::StreamOngoingConversationsRequest {
            agent_id: agent1.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(owned.snapshot().await.is_empty(), "agent1 owns nothing yet");

    let chat = start_chat(&h, "ongoing-filter").await;
    open_only
        .until(&chat.id, |c| c.state == State::Open as i32)
        .await;
    take(&h, "agent1", &chat.id).await;
    let before = open_only.until_removed(&chat.id).await;
    assert!(
        before.iter().all(|c| c.state == State::Open as i32),
        "only OPEN ones: {before:?}"
    );
    let mine = owned
        .until(&chat.id, |c| c.state == State::Active as i32)
        .await;
    assert_eq!(mine.owner_agent_id, agent1);

    // A queue filter: the demo queue's stream holds it, another queue's does not.
    let queue = |queue_id: &str| conv::StreamOngoingConversationsRequest {
        queue_id: queue_id.to_owned(),
        ..Default::default()
    };
    let ids = |held: Vec<conv::Conversation>| held.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let demo_queue = ids(Dashboard::open(&h, queue(&h.creds.queue_id))
        .await
        .snapshot()
        .await);
    assert!(demo_queue.contains(&chat.id), "{demo_queue:?}");
    let elsewhere = ids(Dashboard::open(&h, queue(&rid())).await.snapshot().await);
    assert!(elsewhere.is_empty(), "{elsewhere:?}");

    // Bad filters are refused before anything streams.
    let mut supervisor = h.supervisor("supervisor");
    for (request, field) in [
        (
            conv::StreamOngoingConversationsRequest {
                queue_id: "not-a-uuid".into(),
                ..Default::default()
            },
            "queue_id",
        ),
        (
            conv::StreamOngoingConversationsRequest {
                agent_id: "not-a-uuid".into(),
                ..Default::default()
            },
            "agent_id",
        ),
        (
            conv::StreamOngoingConversationsRequest {
                states: vec![State::Closed as i32],
                ..Default::default()
            },
            "states[0]",
        ),
        (
            conv::StreamOngoingConversationsRequest {
                states: vec![State::Open as i32; 11],
                ..Default::default()
            },
            "states",
        ),
    ] {
        let err = supervisor
            .stream_ongoing_conversations(request)
            .await
            .expect_err("a bad filter is refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {err:?}");
    }

    // An agent is not a supervisor.
    let err = h
        .supervisor("agent1")
        .stream_ongoing_conversations(everything())
        .await
        .expect_err("an agent may not watch the dashboard");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    h.stop().await.expect("clean stop");
}

/// A conversation of a second tenant, set up through the gateway by its administrator.
async fn foreign_conversation(h: &Harness) -> conv::Conversation {
    let (_, admin) = h
        .new_tenant_with_administrator("Globex", "Grace Admin", "grace@globex.test")
        .await;
    let web_chat = set_up_web_chat(h, admin, &[]).await;
    start_chat_in(h, web_chat.bot, &web_chat.queue.id, "globex-visitor").await
}
