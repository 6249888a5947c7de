//! Store conformance: the same cases on SQLite and (when configured) PostgreSQL.

mod support;

use std::time::Duration;

use conversation_svc::domain::access::ParticipantRole;
use conversation_svc::domain::state::State;
use conversation_svc::error::Error;
use conversation_svc::store::{
    CannedResponse, CommandKind, CommandState, ConversationQuery, Event, NewConversation,
    NewMessage, OngoingFilter, PreChatField, RequestKey, StatusCount, StatusLabel, Store, Topic,
    TranscriptLine, WrapUpReason,
};
use switchboard_proto::conversation::v1 as pb;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::idempotency::Fingerprint;

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn new_conversation(tenant: &str, address: &str, name: &str) -> NewConversation {
    NewConversation {
        id: id(),
        tenant_id: tenant.to_owned(),
        channel: 1,
        queue_id: id(),
        program_id: id(),
        contact_id: None,
        contact_display_name: name.to_owned(),
        channel_address: address.to_owned(),
        pre_chat: vec![PreChatField {
            name: "order".into(),
            label: "Order".into(),
            value: "A-1".into(),
        }],
        transcript: vec![
            TranscriptLine {
                sender: pb::SenderKind::Customer as i32,
                text: "hi".into(),
                create_time: 1,
                sender_display_name: String::new(),
            },
            TranscriptLine {
                sender: pb::SenderKind::Bot as i32,
                text: "hello".into(),
                create_time: 2,
                sender_display_name: "Ava".into(),
            },
        ],
        now: now_micros(),
    }
}

/// Creates a conversation with CREATED and QUEUED events and commits.
async fn create(
    store: &Store,
    tenant: &str,
    address: &str,
) -> conversation_svc::store::Conversation {
    let mut m = store.begin().await.unwrap();
    let conv = m
        .create_conversation(&new_conversation(tenant, address, "Casey"))
        .await
        .unwrap();
    m.event(Event::about(
        &conv,
        pb::EventType::Created as i32,
        "",
        conv.create_time,
    ));
    m.event(Event::about(
        &conv,
        pb::EventType::Queued as i32,
        "",
        conv.create_time,
    ));
    m.commit(None, &()).await.unwrap();
    conv
}

/// Assigns `agent` as owner with a segment and a participant row, and commits.
async fn assign(store: &Store, conv: &conversation_svc::store::Conversation, agent: &str) {
    let mut m = store.begin().await.unwrap();
    let mut c = m
        .conversation_for_update(&conv.tenant_id, &conv.id)
        .await
        .unwrap()
        .unwrap();
    let now = now_micros();
    c.state = State::Active;
    c.owner_agent_id = agent.to_owned();
    c.owner_display_name = "Agent".into();
    let queue = c.queue_id.clone();
    m.start_segment(&mut c, agent, &queue, "offer", now)
        .await
        .unwrap();
    m.add_participant(&mut c, agent, "Agent", ParticipantRole::Owner, now)
        .await
        .unwrap();
    m.save_conversation(&c).await.unwrap();
    m.event(Event::about(&c, pb::EventType::Assigned as i32, agent, now));
    m.commit(None, &()).await.unwrap();
}

/// A new conversation is answered from what was written, not read back: the answer
/// must be exactly what a read finds, for a new contact and for a known one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_conversation_is_what_is_stored() {
    for (db, store) in support::stores().await {
        let tenant = id();
        for address in ["visitor-1", "visitor-1"] {
            let mut m = store.begin().await.unwrap();
            let created = m
                .create_conversation(&new_conversation(&tenant, address, "Casey"))
                .await
                .unwrap();
            m.commit(None, &()).await.unwrap();
            let stored = store
                .conversation(&tenant, &created.id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(created, stored, "{}", db.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_round_trip_and_contacts_are_upserted() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let first = create(&store, &tenant, "visitor-1").await;
        let read = store
            .conversation(&tenant, &first.id)
            .await
            .unwrap()
            .unwrap();
        // Events commit after the conversation row is written: the stored counter moved on.
        assert_eq!(read.last_event_sequence, 2, "{}", db.name);
        assert_eq!(
            read,
            conversation_svc::store::Conversation {
                last_event_sequence: read.last_event_sequence,
                ..first.clone()
            },
            "{}",
            db.name
        );
        assert_eq!(read.state, State::Open);
        assert_eq!(read.pre_chat.len(), 1);
        assert_eq!(read.transcript.len(), 2);
        assert_eq!(read.transcript[1].text, "hello");

        // Same customer, same channel: same contact, newest name.
        let mut m = store.begin().await.unwrap();
        let second = m
            .create_conversation(&new_conversation(&tenant, "visitor-1", "Casey C."))
            .await
            .unwrap();
        m.commit(None, &()).await.unwrap();
        assert_eq!(second.contact.id, first.contact.id, "{}", db.name);
        assert_eq!(second.contact.display_name, "Casey C.");
        let again = store
            .conversation(&tenant, &first.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.contact.display_name, "Casey C.");

        // Another tenant: another contact, and it cannot read the first tenant's.
        let other = id();
        let theirs = create(&store, &other, "visitor-1").await;
        assert_ne!(theirs.contact.id, first.contact.id);
        assert!(
            store
                .conversation(&other, &first.id)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_mutation_changes_nothing() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let before = store.last_sequence().await.unwrap();
        let new = new_conversation(&tenant, "v", "n");
        {
            let mut m = store.begin().await.unwrap();
            let conv = m.create_conversation(&new).await.unwrap();
            m.event(Event::about(&conv, pb::EventType::Created as i32, "", 1));
            // Dropped without commit.
        }
        assert!(
            store
                .conversation(&tenant, &new.id)
                .await
                .unwrap()
                .is_none(),
            "{}",
            db.name
        );
        assert_eq!(store.last_sequence().await.unwrap(), before);
        let conv = create(&store, &tenant, "v").await;
        let events = store.conversation_events(&conv.id, 0, 10).await.unwrap();
        let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
        assert_eq!(sequences, vec![before + 1, before + 2], "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_everything_reporting_needs() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let conv = create(&store, &tenant, "v").await;
        assign(&store, &conv, "agent-1").await;
        let events = store.conversation_events(&conv.id, 0, 10).await.unwrap();
        let kinds: Vec<i32> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                pb::EventType::Created as i32,
                pb::EventType::Queued as i32,
                pb::EventType::Assigned as i32
            ],
            "{}",
            db.name
        );
        let assigned = &events[2];
        assert_eq!(assigned.tenant_id, tenant);
        assert_eq!(assigned.agent_id, "agent-1");
        assert_eq!(assigned.queue_id, conv.queue_id);
        assert_eq!(assigned.program_id, conv.program_id);
        assert_eq!(assigned.channel, 1);
        assert_eq!(assigned.state, State::Active.code());
        assert_eq!(assigned.conversation_create_time, conv.create_time);
        assert!(!assigned.segment_id.is_empty());
        let segments = store.segments(&conv.id, 0, 10).await.unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].id, assigned.segment_id);
        assert_eq!(segments[0].ordinal, 1);
        assert_eq!(segments[0].end_time, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_get_gap_free_sequences_and_a_follower_never_skips() {
    const WRITERS: usize = 6;
    const COMMITS: usize = 8;
    for (db, store) in support::stores().await {
        let tenant = id();
        let start = store.last_sequence().await.unwrap();
        let convs: Vec<_> = {
            let mut v = Vec::new();
            for i in 0..WRITERS {
                v.push(create(&store, &tenant, &format!("v{i}")).await);
            }
            v
        };
        let base = store.last_sequence().await.unwrap();
        assert_eq!(base, start + 2 * WRITERS as i64);
        let expected_total = base + (WRITERS * COMMITS * 2) as i64;

        // A follower reading `sequence > cursor` while the writers run must see every
        // sequence, in order, with no gap.
        let follower = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut cursor = base;
                let mut seen = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while cursor < expected_total {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "follower stalled at {cursor}"
                    );
                    for event in store.events_after(cursor, 50).await.unwrap() {
                        assert_eq!(
                            event.sequence,
                            cursor + 1,
                            "the follower skipped a sequence"
                        );
                        cursor = event.sequence;
                        seen.push(event.sequence);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                seen
            })
        };

        let mut writers = Vec::new();
        for (w, conv) in convs.into_iter().enumerate() {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..COMMITS {
                    let mut m = store.begin().await.unwrap();
                    let mut c = m
                        .conversation_for_update(&conv.tenant_id, &conv.id)
                        .await
                        .unwrap()
                        .unwrap();
                    let message = m
                        .add_message(
                            &mut c,
                            NewMessage {
                                sender: pb::SenderKind::Customer as i32,
                                sender_id: String::new(),
                                sender_display_name: "Casey".into(),
                                text: format!("w{w} m{i}"),
                                internal: false,
                            },
                            id(),
                            0,
                            now_micros(),
                        )
                        .await
                        .unwrap();
                    let mut e =
                        Event::about(&c, pb::EventType::MessageAdded as i32, "", now_micros());
                    e.message_id = message.id;
                    m.event(e);
                    m.event(Event::about(
                        &c,
                        pb::EventType::Waiting as i32,
                        "",
                        now_micros(),
                    ));
                    // Hold the transaction open a little so that commits overlap.
                    tokio::time::sleep(Duration::from_millis((i % 3) as u64)).await;
                    let committed = m.commit(None, &()).await.unwrap();
                    assert_eq!(committed.sequences.len(), 2);
                    assert_eq!(committed.sequences[1], committed.sequences[0] + 1);
                }
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        let seen = follower.await.unwrap();
        assert_eq!(seen.len(), WRITERS * COMMITS * 2, "{}", db.name);
        let all = store.events_after(base, 10_000).await.unwrap();
        let sequences: Vec<i64> = all.iter().map(|e| e.sequence).collect();
        let expected: Vec<i64> = (base + 1..=expected_total).collect();
        assert_eq!(sequences, expected, "{}", db.name);
        // Messages of one conversation are numbered 1..=COMMITS.
        let any = &all[0].conversation_id;
        let ordinals: Vec<i64> = store
            .messages(any, 0, 100, true)
            .await
            .unwrap()
            .iter()
            .map(|m| m.ordinal)
            .collect();
        assert_eq!(ordinals, (1..=COMMITS as i64).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_that_took_the_next_sequence_holds_back_the_ones_after_it() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let conv = create(&store, &tenant, "v").await;
        let before = store.last_sequence().await.unwrap();

        // A slow transaction takes the next sequence and does not commit yet.
        let mut slow = store.db().begin().await.unwrap();
        let (taken,): (i64,) =
            sqlx::query_as("UPDATE event_counter SET last = last + 1 WHERE id = 1 RETURNING last")
                .fetch_one(&mut *slow)
                .await
                .unwrap();
        assert_eq!(taken, before + 1);

        // A second writer starts meanwhile.
        let fast = {
            let store = store.clone();
            let conv = conv.clone();
            tokio::spawn(async move {
                let mut m = store.begin().await.unwrap();
                let conv = m
                    .conversation_for_update(&conv.tenant_id, &conv.id)
                    .await
                    .unwrap()
                    .unwrap();
                m.event(Event::about(
                    &conv,
                    pb::EventType::Waiting as i32,
                    "",
                    now_micros(),
                ));
                m.commit(None, &()).await.unwrap().sequences
            })
        };
        wait_until_writer_blocks(&store, &fast, db.name).await;
        assert!(
            !fast.is_finished(),
            "{}: the second writer committed past an open lower sequence",
            db.name
        );
        assert!(
            store.events_after(before, 10).await.unwrap().is_empty(),
            "{}: a reader saw a sequence above an uncommitted one",
            db.name
        );

        let mut e = Event::about(&conv, pb::EventType::Resumed as i32, "", now_micros());
        e.sequence = taken;
        sqlx::query(
            "INSERT INTO events (sequence, id, tenant_id, conversation_id, type, occur_time, \
             actor_id, agent_id, previous_agent_id, queue_id, program_id, channel, segment_id, \
             state, wrap_up_reason_ids, message_id, transfer_id, detail, conversation_create_time) \
             VALUES ($1, $2, $3, $4, $5, $6, '', '', '', '', '', 1, '', 1, '', '', '', '', 0)",
        )
        .bind(e.sequence)
        .bind(&e.id)
        .bind(&e.tenant_id)
        .bind(&e.conversation_id)
        .bind(i64::from(e.kind))
        .bind(e.occur_time)
        .execute(&mut *slow)
        .await
        .unwrap();
        slow.commit().await.unwrap();

        let sequences = tokio::time::timeout(Duration::from_secs(10), fast)
            .await
            .expect("the second writer finishes once the first commits")
            .unwrap();
        assert_eq!(sequences, vec![before + 2], "{}", db.name);
        let seen: Vec<i64> = store
            .events_after(before, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.sequence)
            .collect();
        assert_eq!(seen, vec![before + 1, before + 2]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_responses_replay_and_a_second_record_conflicts() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let request_id = id();
        let request = |text: &str| pb::SendMessageRequest {
            request_id: request_id.clone(),
            text: text.into(),
            ..Default::default()
        };
        let key = RequestKey {
            tenant_id: &tenant,
            caller: "user:alice",
            method: "ConversationService/SendMessage",
            request_id: &request_id,
            fingerprint: Fingerprint::of(&request("hello")),
        };
        let response = pb::SendMessageResponse {
            message: Some(pb::Message {
                id: "m1".into(),
                text: "hello".into(),
                ..Default::default()
            }),
        };
        let mut m = store.begin().await.unwrap();
        assert!(
            m.replay::<pb::SendMessageResponse>(key)
                .await
                .unwrap()
                .is_none()
        );
        m.commit(Some(key), &response).await.unwrap();

        let replayed: pb::SendMessageResponse = store.replay(key).await.unwrap().unwrap();
        assert_eq!(replayed, response, "{}", db.name);
        // The same request id in another tenant, method or by another caller is another
        // request.
        let other_tenant = id();
        for other in [
            RequestKey {
                tenant_id: &other_tenant,
                ..key
            },
            RequestKey {
                method: "ConversationService/EndConversation",
                ..key
            },
            RequestKey {
                caller: "user:bob",
                ..key
            },
        ] {
            let seen = store
                .replay::<pb::SendMessageResponse>(other)
                .await
                .unwrap();
            assert!(seen.is_none(), "{}: {other:?}", db.name);
        }
        // The same key with another body is refused, in and outside a transaction.
        let changed = RequestKey {
            fingerprint: Fingerprint::of(&request("goodbye")),
            ..key
        };
        let err = store
            .replay::<pb::SendMessageResponse>(changed)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, .. } if field == "request_id"),
            "{}: {err:?}",
            db.name
        );
        let mut m = store.begin().await.unwrap();
        let err = m
            .replay::<pb::SendMessageResponse>(changed)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, .. } if field == "request_id"),
            "{}: {err:?}",
            db.name
        );
        drop(m);

        let m = store.begin().await.unwrap();
        let err = m.commit(Some(key), &response).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{}: {err:?}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_commands_are_claimed_retried_and_finished() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let conv = id();
        let now = now_micros();
        let mut m = store.begin().await.unwrap();
        let enqueue = m
            .add_command(CommandKind::Enqueue, &tenant, &conv, vec![1, 2, 3], now)
            .await
            .unwrap();
        let release = m
            .add_command(CommandKind::ReleaseCapacity, &tenant, &conv, vec![4], now)
            .await
            .unwrap();
        let committed = m.commit(None, &()).await.unwrap();
        assert_eq!(committed.commands, vec![enqueue.clone(), release.clone()]);

        let claim = |at: i64, lease_until: i64| {
            let store = store.clone();
            async move {
                let mut m = store.begin().await.unwrap();
                let claimed: Vec<String> = m
                    .claim_commands(at, lease_until, 10)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| c.id)
                    .collect();
                m.commit(None, &()).await.unwrap();
                claimed
            }
        };

        // Only the first command of the conversation is handed out; the claim's lease
        // hides it from the next round, and the later one waits behind it.
        assert_eq!(
            claim(now, now + 1_000_000).await,
            vec![enqueue.clone()],
            "{}",
            db.name
        );
        assert!(
            claim(now + 10, now + 1_000_000).await.is_empty(),
            "{}",
            db.name
        );

        let mut m = store.begin().await.unwrap();
        m.retry_command(&enqueue, "UNAVAILABLE: down", now + 500, now + 1_000_000)
            .await
            .unwrap();
        m.commit(None, &()).await.unwrap();
        let command = store.command(&enqueue).await.unwrap().unwrap();
        assert_eq!(command.attempts, 1);
        assert_eq!(command.state, CommandState::Pending);
        assert_eq!(command.last_error, "UNAVAILABLE: down");
        assert_eq!(command.payload, vec![1, 2, 3]);
        assert_eq!((command.conversation_seq, command.lease_until), (1, 0));
        // Waiting out its backoff, it still holds back the release.
        assert!(
            claim(now + 10, now + 1_000_000).await.is_empty(),
            "{}",
            db.name
        );
        assert_eq!(
            claim(now + 500, now + 1_000_000).await,
            vec![enqueue.clone()]
        );

        let mut m = store.begin().await.unwrap();
        m.complete_command(&enqueue, now).await.unwrap();
        m.commit(None, &()).await.unwrap();
        assert_eq!(
            claim(now + 500, now + 1_000_000).await,
            vec![release.clone()]
        );
        let mut m = store.begin().await.unwrap();
        m.fail_command(&release, "NOT_FOUND: queue", now)
            .await
            .unwrap();
        m.commit(None, &()).await.unwrap();
        assert!(claim(now + 10_000_000, now + 20_000_000).await.is_empty());
        assert_eq!(
            store.command(&enqueue).await.unwrap().unwrap().state,
            CommandState::Done
        );
        assert_eq!(
            store.command(&release).await.unwrap().unwrap().state,
            CommandState::Failed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrap_up_reasons_by_name_queue_and_activity() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let queue_a = id();
        let queue_b = id();
        let reason = |name: &str, queues: Vec<String>, active: bool| WrapUpReason {
            id: id(),
            tenant_id: tenant.clone(),
            queue_ids: queues,
            display_name: name.to_owned(),
            marks_transferred: false,
            code: String::new(),
            active,
        };
        let resolved = reason("Resolved", vec![queue_a.clone()], true);
        let everywhere = reason("Callback", vec![], true);
        let retired = reason("Old", vec![queue_a.clone()], false);
        let mut m = store.begin().await.unwrap();
        for r in [&resolved, &everywhere, &retired] {
            m.insert_reason(r, now_micros()).await.unwrap();
        }
        m.commit(None, &()).await.unwrap();

        let mut m = store.begin().await.unwrap();
        let err = m
            .insert_reason(&reason("Resolved", vec![], true), now_micros())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::AlreadyExists(_)),
            "{}: {err:?}",
            db.name
        );
        drop(m);

        let names =
            |rs: Vec<WrapUpReason>| rs.into_iter().map(|r| r.display_name).collect::<Vec<_>>();
        assert_eq!(
            names(
                store
                    .list_reasons(&tenant, None, false, None, 10)
                    .await
                    .unwrap()
            ),
            vec!["Callback", "Resolved"],
            "{}",
            db.name
        );
        assert_eq!(
            names(
                store
                    .list_reasons(&tenant, None, true, None, 10)
                    .await
                    .unwrap()
            ),
            vec!["Callback", "Old", "Resolved"]
        );
        assert_eq!(
            names(
                store
                    .list_reasons(&tenant, Some(&queue_b), true, None, 10)
                    .await
                    .unwrap()
            ),
            vec!["Callback"]
        );
        assert_eq!(
            names(
                store
                    .list_reasons(
                        &tenant,
                        None,
                        true,
                        Some(("Callback".into(), everywhere.id.clone())),
                        10
                    )
                    .await
                    .unwrap()
            ),
            vec!["Old", "Resolved"]
        );
        assert!(
            store
                .list_reasons(&id(), None, true, None, 10)
                .await
                .unwrap()
                .is_empty()
        );

        let mut changed = resolved.clone();
        changed.queue_ids = vec![queue_b.clone()];
        changed.active = false;
        let mut m = store.begin().await.unwrap();
        m.update_reason(&changed, now_micros()).await.unwrap();
        let found = m
            .reasons_by_ids(&tenant, std::slice::from_ref(&resolved.id))
            .await
            .unwrap();
        m.commit(None, &()).await.unwrap();
        assert_eq!(found, vec![changed.clone()]);
        assert_eq!(
            store.reason(&tenant, &resolved.id).await.unwrap(),
            Some(changed)
        );
        assert!(store.reason(&id(), &resolved.id).await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_applies_visibility_filters_and_pages() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let open = create(&store, &tenant, "a").await;
        let mine = create(&store, &tenant, "b").await;
        let theirs = create(&store, &tenant, "c").await;
        assign(&store, &mine, "me").await;
        assign(&store, &theirs, "them").await;

        let list = |viewer: &str, sees_all: bool| ConversationQuery {
            tenant_id: tenant.clone(),
            viewer_id: viewer.to_owned(),
            sees_all,
            limit: 10,
            ..Default::default()
        };
        let ids = |cs: Vec<conversation_svc::store::Conversation>| {
            cs.into_iter().map(|c| c.id).collect::<Vec<_>>()
        };

        let serving = |queue_id: &str| ConversationQuery {
            viewer_queues: vec![queue_id.to_owned()],
            ..list("me", false)
        };
        let mut seen = ids(store
            .list_conversations(&serving(&open.queue_id))
            .await
            .unwrap());
        seen.sort();
        let mut expected = vec![open.id.clone(), mine.id.clone()];
        expected.sort();
        assert_eq!(
            seen, expected,
            "{}: an agent sees open unassigned ones of its queues and its own",
            db.name
        );
        assert_eq!(
            ids(store.list_conversations(&serving(&id())).await.unwrap()),
            vec![mine.id.clone()],
            "{}: an agent does not see what waits in queues it does not serve",
            db.name
        );
        assert_eq!(
            ids(store.list_conversations(&list("me", false)).await.unwrap()),
            vec![mine.id.clone()],
            "{}: an agent who serves no queue sees its own only",
            db.name
        );
        assert_eq!(
            store
                .list_conversations(&list("sup", true))
                .await
                .unwrap()
                .len(),
            3
        );

        let mut only_active = list("sup", true);
        only_active.states = vec![State::Active.code()];
        only_active.owner_agent_id = Some("them".into());
        assert_eq!(
            ids(store.list_conversations(&only_active).await.unwrap()),
            vec![theirs.id.clone()]
        );

        let mut by_queue = list("sup", true);
        by_queue.queue_id = Some(open.queue_id.clone());
        assert_eq!(
            ids(store.list_conversations(&by_queue).await.unwrap()),
            vec![open.id.clone()]
        );

        // Pages: newest first, no repeats, nothing lost.
        let mut page = list("sup", true);
        page.limit = 2;
        let first = store.list_conversations(&page).await.unwrap();
        assert_eq!(first.len(), 2);
        assert!(first[0].create_time >= first[1].create_time);
        let last = first.last().unwrap();
        page.before = Some((last.create_time, last.id.clone()));
        let second = store.list_conversations(&page).await.unwrap();
        assert_eq!(second.len(), 1);
        let mut all = ids(first);
        all.extend(ids(second));
        all.sort();
        let mut expected = vec![open.id, mine.id, theirs.id];
        expected.sort();
        assert_eq!(all, expected);

        let mut other_tenant = list("sup", true);
        other_tenant.tenant_id = id();
        assert!(
            store
                .list_conversations(&other_tenant)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_ordered_and_internal_ones_can_be_left_out() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let conv = create(&store, &tenant, "a").await;
        let mut m = store.begin().await.unwrap();
        let mut c = m
            .conversation_for_update(&tenant, &conv.id)
            .await
            .unwrap()
            .unwrap();
        for (text, internal) in [("one", false), ("note", true), ("two", false)] {
            m.add_message(
                &mut c,
                NewMessage {
                    sender: pb::SenderKind::Agent as i32,
                    sender_id: "me".into(),
                    sender_display_name: "Me".into(),
                    text: text.into(),
                    internal,
                },
                id(),
                0,
                now_micros(),
            )
            .await
            .unwrap();
        }
        m.commit(None, &()).await.unwrap();
        let texts = |ms: Vec<conversation_svc::store::Message>| {
            ms.into_iter().map(|m| m.text).collect::<Vec<_>>()
        };
        assert_eq!(
            texts(store.messages(&conv.id, 0, 10, true).await.unwrap()),
            vec!["one", "note", "two"],
            "{}",
            db.name
        );
        assert_eq!(
            texts(store.messages(&conv.id, 0, 10, false).await.unwrap()),
            vec!["one", "two"]
        );
        assert_eq!(
            texts(store.messages(&conv.id, 1, 1, true).await.unwrap()),
            vec!["note"]
        );
        let reread = store
            .conversation(&tenant, &conv.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reread.message_count, 3);
        let all = store.messages(&conv.id, 0, 10, true).await.unwrap();
        assert_eq!(store.message(&all[1].id).await.unwrap().unwrap(), all[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_offers_are_remembered() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let conv = create(&store, &tenant, "a").await;
        let offer = id();
        let mut m = store.begin().await.unwrap();
        assert!(m.assignment_by_offer(&offer).await.unwrap().is_none());
        m.record_assignment(&offer, &conv, "agent", "segment", now_micros())
            .await
            .unwrap();
        m.commit(None, &()).await.unwrap();
        let mut m = store.begin().await.unwrap();
        let applied = m.assignment_by_offer(&offer).await.unwrap().unwrap();
        assert_eq!(applied.conversation_id, conv.id, "{}", db.name);
        assert_eq!(applied.tenant_id, tenant);
        assert_eq!(applied.agent_id, "agent");
    }
}

/// A commit wakes the streams of its conversation and of the whole log, not another
/// conversation's; another replica's commit reaches this process's streams through the
/// change follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_wake_only_the_streams_they_concern() {
    use futures::FutureExt as _;
    use tokio_util::sync::CancellationToken;
    for (db, store) in support::stores().await {
        let other = create(&store, &id(), "b").await;
        let log = store.changes().watch([Topic::Log]);
        let elsewhere = store
            .changes()
            .watch([Topic::Conversation(other.id.clone())]);
        create(&store, &id(), "a").await;
        tokio::time::timeout(Duration::from_secs(5), log.changed())
            .await
            .unwrap_or_else(|_| panic!("{}: the log's stream was not woken", db.name));
        assert!(
            elsewhere.changed().now_or_never().is_none(),
            "{}: another conversation's stream was woken",
            db.name
        );

        // A second process on the same database: its follower publishes our commit.
        let replica = Store::new(store.db().clone());
        let stop = CancellationToken::new();
        let follower = replica
            .follow_changes(Duration::from_millis(10), stop.clone())
            .await
            .unwrap();
        let watched = replica.changes().watch([Topic::Log]);
        create(&store, &id(), "c").await;
        tokio::time::timeout(Duration::from_secs(5), watched.changed())
            .await
            .unwrap_or_else(|_| panic!("{}: the replica's stream was not woken", db.name));
        stop.cancel();
        follower.await.unwrap();
    }
}

/// A supervisor's live view of a tenant is woken by every commit of that tenant, here and
/// on another replica, and by no other tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_wake_the_live_views_of_their_tenant_only() {
    use futures::FutureExt as _;
    use tokio_util::sync::CancellationToken;
    for (db, store) in support::stores().await {
        let (tenant, other) = (id(), id());
        let view = store.changes().watch([Topic::Tenant(tenant.clone())]);
        let elsewhere = store.changes().watch([Topic::Tenant(other.clone())]);
        create(&store, &tenant, "a").await;
        tokio::time::timeout(Duration::from_secs(5), view.changed())
            .await
            .unwrap_or_else(|_| panic!("{}: the tenant's view was not woken", db.name));
        assert!(
            elsewhere.changed().now_or_never().is_none(),
            "{}: another tenant's view was woken",
            db.name
        );

        let replica = Store::new(store.db().clone());
        let stop = CancellationToken::new();
        let follower = replica
            .follow_changes(Duration::from_millis(10), stop.clone())
            .await
            .unwrap();
        let watched = replica.changes().watch([Topic::Tenant(tenant.clone())]);
        let unconcerned = replica.changes().watch([Topic::Tenant(other.clone())]);
        create(&store, &tenant, "b").await;
        tokio::time::timeout(Duration::from_secs(5), watched.changed())
            .await
            .unwrap_or_else(|_| panic!("{}: the replica's view was not woken", db.name));
        assert!(
            unconcerned.changed().now_or_never().is_none(),
            "{}: the replica woke another tenant's view",
            db.name
        );
        stop.cancel();
        follower.await.unwrap();
    }
}

/// The snapshot of a live view pages through the tenant's conversations that are not
/// CLOSED, newest first, with the filter the stream applies to changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ongoing_pages_leave_out_closed_conversations_and_other_tenants() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let open = create(&store, &tenant, "a").await;
        let mine = create(&store, &tenant, "b").await;
        let closed = create(&store, &tenant, "c").await;
        let newest = create(&store, &tenant, "d").await;
        assign(&store, &mine, "me").await;
        close(&store, &closed).await;
        create(&store, &id(), "e").await;

        let everything = OngoingFilter {
            tenant_id: tenant.clone(),
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .ongoing_page(&everything, before.as_ref(), 2)
                .await
                .unwrap();
            for conv in &page {
                assert!(everything.matches(conv), "{}: {conv:?}", db.name);
                seen.push((conv.create_time, conv.id.clone()));
            }
            if page.len() < 2 {
                break;
            }
            before = seen.last().cloned();
        }
        let mut expected: Vec<(i64, String)> = [&newest, &mine, &open]
            .iter()
            .map(|c| (c.create_time, c.id.clone()))
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        assert_eq!(
            seen, expected,
            "{}: every ongoing one once, newest first",
            db.name
        );

        let ids = |cs: Vec<conversation_svc::store::Conversation>| {
            cs.into_iter().map(|c| c.id).collect::<Vec<_>>()
        };
        let only_open = OngoingFilter {
            states: vec![State::Open.code()],
            ..everything.clone()
        };
        let mut open_ids = ids(store.ongoing_page(&only_open, None, 10).await.unwrap());
        open_ids.sort();
        let mut expected = vec![open.id.clone(), newest.id.clone()];
        expected.sort();
        assert_eq!(open_ids, expected, "{}: by state", db.name);
        let owned = OngoingFilter {
            owner_agent_id: Some("me".into()),
            ..everything.clone()
        };
        let owned = store.ongoing_page(&owned, None, 10).await.unwrap();
        assert_eq!(
            ids(owned.clone()),
            vec![mine.id.clone()],
            "{}: by owner",
            db.name
        );
        assert_eq!(owned[0].participants.len(), 1, "{}: participants", db.name);
        let by_queue = OngoingFilter {
            queue_id: Some(open.queue_id.clone()),
            ..everything.clone()
        };
        assert_eq!(
            ids(store.ongoing_page(&by_queue, None, 10).await.unwrap()),
            vec![open.id.clone()],
            "{}: by queue",
            db.name
        );
        let closed_queue = OngoingFilter {
            queue_id: Some(closed.queue_id.clone()),
            ..everything.clone()
        };
        assert!(
            store
                .ongoing_page(&closed_queue, None, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}: a CLOSED one is never ongoing",
            db.name
        );
        let stranger = OngoingFilter {
            tenant_id: id(),
            ..Default::default()
        };
        assert!(
            store
                .ongoing_page(&stranger, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

/// After a wake-up a live view reads only its tenant's conversations changed after its
/// cursor, each once, and loads just those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_after_a_cursor_name_each_conversation_of_the_tenant_once() {
    for (db, store) in support::stores().await {
        let (tenant, other) = (id(), id());
        let before = create(&store, &tenant, "a").await;
        let cursor = store.last_sequence().await.unwrap();
        let first = create(&store, &tenant, "b").await;
        let foreign = create(&store, &other, "c").await;
        assign(&store, &before, "me").await;
        assign(&store, &first, "me").await;

        let changed = store.changed_after(&tenant, cursor, 100).await.unwrap();
        assert_eq!(
            changed.conversation_ids,
            vec![first.id.clone(), before.id.clone()],
            "{}: in the order of first change, each once",
            db.name
        );
        assert_eq!(changed.through, store.last_sequence().await.unwrap());
        assert!(!changed.more);
        let again = store
            .changed_after(&tenant, changed.through, 100)
            .await
            .unwrap();
        assert!(again.conversation_ids.is_empty(), "{}: {again:?}", db.name);
        assert_eq!(again.through, changed.through);

        // A cut read says so and resumes where it stopped.
        let cut = store.changed_after(&tenant, cursor, 2).await.unwrap();
        assert_eq!(cut.conversation_ids, vec![first.id.clone()]);
        assert!(cut.more);
        let rest = store
            .changed_after(&tenant, cut.through, 100)
            .await
            .unwrap();
        assert_eq!(
            rest.conversation_ids,
            vec![before.id.clone(), first.id.clone()]
        );

        let mut loaded = store
            .conversations_by_id(
                &tenant,
                &[before.id.clone(), first.id.clone(), foreign.id.clone()],
                false,
            )
            .await
            .unwrap();
        loaded.sort_by(|a, b| a.id.cmp(&b.id));
        let mut expected = vec![before.id.clone(), first.id.clone()];
        expected.sort();
        assert_eq!(
            loaded.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            expected,
            "{}: another tenant's conversation is not loaded",
            db.name
        );
        assert!(
            loaded
                .iter()
                .all(|c| c.owner_agent_id == "me" && c.participants.len() == 1)
        );
        assert_eq!(
            store
                .changed_after(&other, cursor, 100)
                .await
                .unwrap()
                .conversation_ids,
            vec![foreign.id]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_keeps_one_history_across_channel_identities() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let web = create(&store, &tenant, "visitor-7").await;
        let contact_id = web.contact.id.clone();

        // The bot recognised the customer on SMS: the phone number joins the same contact.
        let mut sms = new_conversation(&tenant, "+15550100", "");
        sms.channel = 2;
        sms.contact_id = Some(contact_id.clone());
        let mut m = store.begin().await.unwrap();
        let by_phone = m.create_conversation(&sms).await.unwrap();
        m.commit(None, &()).await.unwrap();
        assert_eq!(by_phone.contact.id, contact_id, "{}", db.name);
        assert_eq!(
            by_phone.contact.display_name, "Casey",
            "{}: no name given keeps the known one",
            db.name
        );
        assert_eq!(by_phone.channel_address, "+15550100");

        // Writing again from the phone number finds the contact without being told.
        let mut again = new_conversation(&tenant, "+15550100", "Casey C.");
        again.channel = 2;
        let mut m = store.begin().await.unwrap();
        let later = m.create_conversation(&again).await.unwrap();
        m.commit(None, &()).await.unwrap();
        assert_eq!(later.contact.id, contact_id, "{}", db.name);

        let contact = store.contact(&tenant, &contact_id).await.unwrap().unwrap();
        let identities: Vec<(i32, &str)> = contact
            .identities
            .iter()
            .map(|i| (i.channel, i.address.as_str()))
            .collect();
        assert_eq!(
            identities,
            vec![(1, "visitor-7"), (2, "+15550100")],
            "{}",
            db.name
        );
        assert_eq!(contact.display_name, "Casey C.", "{}", db.name);
        assert!(
            store.contact(&id(), &contact_id).await.unwrap().is_none(),
            "{}: another tenant does not see the contact",
            db.name
        );

        // An address that already belongs to someone else is not moved silently.
        let other = create(&store, &tenant, "visitor-8").await;
        let mut steal = new_conversation(&tenant, "visitor-8", "");
        steal.contact_id = Some(contact_id.clone());
        let mut m = store.begin().await.unwrap();
        let err = m.create_conversation(&steal).await.unwrap_err();
        assert!(matches!(err, Error::WrongState(_)), "{}: {err:?}", db.name);
        drop(m);
        assert_ne!(other.contact.id, contact_id);

        // A contact of another tenant cannot be named.
        let mut foreign = new_conversation(&id(), "visitor-9", "");
        foreign.contact_id = Some(contact_id.clone());
        let mut m = store.begin().await.unwrap();
        let err = m.create_conversation(&foreign).await.unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{}: {err:?}", db.name);
    }
}

/// Closes `conv` (as wrap-up does, without its events) and commits.
async fn close(store: &Store, conv: &conversation_svc::store::Conversation) {
    let mut m = store.begin().await.unwrap();
    let mut c = m
        .conversation_for_update(&conv.tenant_id, &conv.id)
        .await
        .unwrap()
        .unwrap();
    c.state = State::Closed;
    c.close_time = Some(now_micros());
    m.save_conversation(&c).await.unwrap();
    m.commit(None, &()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_history_spans_channels_newest_first_and_pages() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let first = create(&store, &tenant, "visitor-h1").await;
        let contact_id = first.contact.id.clone();
        let mut sms = new_conversation(&tenant, "+15550111", "");
        sms.channel = 2;
        sms.contact_id = Some(contact_id.clone());
        sms.now = first.create_time + 1;
        let mut m = store.begin().await.unwrap();
        let second = m.create_conversation(&sms).await.unwrap();
        m.commit(None, &()).await.unwrap();
        let mut again = new_conversation(&tenant, "visitor-h1", "");
        again.now = first.create_time + 2;
        let mut m = store.begin().await.unwrap();
        let third = m.create_conversation(&again).await.unwrap();
        m.commit(None, &()).await.unwrap();
        // Someone else's conversation, and another tenant's at the same address.
        create(&store, &tenant, "visitor-h2").await;
        create(&store, &id(), "visitor-h1").await;

        let all = store
            .contact_history(&tenant, &contact_id, None, 10, false)
            .await
            .unwrap();
        let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            vec![third.id.as_str(), second.id.as_str(), first.id.as_str()],
            "{}: every channel, newest first",
            db.name
        );
        assert!(
            all.iter().all(|c| c.pre_chat.is_empty()),
            "{}: BASIC leaves the children out",
            db.name
        );
        let page = store
            .contact_history(&tenant, &contact_id, None, 2, true)
            .await
            .unwrap();
        assert_eq!(page.len(), 2, "{}", db.name);
        assert_eq!(page[0].pre_chat.len(), 1, "{}: FULL brings them", db.name);
        assert_eq!(page[0].contact.identities.len(), 2, "{}", db.name);
        let last = page.last().unwrap();
        let rest = store
            .contact_history(
                &tenant,
                &contact_id,
                Some((last.create_time, last.id.clone())),
                2,
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            rest.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            vec![first.id.as_str()],
            "{}",
            db.name
        );
        assert!(
            store
                .contact_history(&id(), &contact_id, None, 10, false)
                .await
                .unwrap()
                .is_empty(),
            "{}: another tenant reads nothing",
            db.name
        );

        // The conversations an agent took part in, whatever their state, are the ones that
        // can make it the contact's handler; they come with their participants.
        assign(&store, &first, "agent-h").await;
        close(&store, &first).await;
        assign(&store, &second, "agent-h").await;
        let handled = store
            .contact_conversations_of_user(&tenant, &contact_id, "agent-h")
            .await
            .unwrap();
        let ids: Vec<&str> = handled.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            vec![second.id.as_str(), first.id.as_str()],
            "{}",
            db.name
        );
        assert_eq!(handled[1].state, State::Closed, "{}", db.name);
        assert_eq!(handled[0].participants.len(), 1, "{}", db.name);
        assert_eq!(handled[0].participants[0].user_id, "agent-h");
        assert!(
            store
                .contact_conversations_of_user(&tenant, &contact_id, "agent-x")
                .await
                .unwrap()
                .is_empty(),
            "{}",
            db.name
        );
        assert!(
            store
                .contact_conversations_of_user(&id(), &contact_id, "agent-h")
                .await
                .unwrap()
                .is_empty(),
            "{}",
            db.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_conversation_has_one_follow_up_and_a_reopened_one_loses_its_agents() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let closed = create(&store, &tenant, "visitor-f1").await;
        assign(&store, &closed, "agent-f").await;
        close(&store, &closed).await;

        let mut m = store.begin().await.unwrap();
        assert_eq!(
            m.follow_up_of(&tenant, &closed.id).await.unwrap(),
            None,
            "{}",
            db.name
        );
        let mut next = new_conversation(&tenant, "visitor-f1", "");
        next.contact_id = Some(closed.contact.id.clone());
        let mut follow = m.create_conversation(&next).await.unwrap();
        m.link_follow_up(&mut follow, &closed.id).await.unwrap();
        assert_eq!(follow.previous_conversation_id, closed.id);
        m.commit(None, &()).await.unwrap();
        let stored = store
            .conversation(&tenant, &follow.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.previous_conversation_id, closed.id, "{}", db.name);
        assert_eq!(stored, follow, "{}", db.name);
        let before = store
            .conversation(&tenant, &closed.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before.previous_conversation_id, "", "{}", db.name);

        let mut m = store.begin().await.unwrap();
        assert_eq!(
            m.follow_up_of(&tenant, &closed.id).await.unwrap(),
            Some(follow.id.clone()),
            "{}",
            db.name
        );
        assert_eq!(
            m.follow_up_of(&id(), &closed.id).await.unwrap(),
            None,
            "{}: another tenant finds none",
            db.name
        );
        // A second follow-up of the same conversation is refused by the database.
        let mut twin = new_conversation(&tenant, "visitor-f1", "");
        twin.contact_id = Some(closed.contact.id.clone());
        let mut twin = m.create_conversation(&twin).await.unwrap();
        let err = m.link_follow_up(&mut twin, &closed.id).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{}: {err:?}", db.name);
        drop(m);

        // Reopening releases everyone who took part.
        let mut m = store.begin().await.unwrap();
        let mut c = m
            .conversation_for_update(&tenant, &closed.id)
            .await
            .unwrap()
            .unwrap();
        assert!(c.role_of("agent-f").is_some(), "{}", db.name);
        let now = now_micros();
        m.release_participants(&mut c, now).await.unwrap();
        assert_eq!(c.role_of("agent-f"), None, "{}", db.name);
        m.commit(None, &()).await.unwrap();
        let read = store
            .conversation(&tenant, &closed.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.participants.len(), 1, "{}", db.name);
        assert_eq!(read.participants[0].leave_time, Some(now), "{}", db.name);
        assert_eq!(read.participants, c.participants, "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_numbered_per_conversation_and_stale_numbering_is_refused() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let a = create(&store, &tenant, "a").await;
        let b = create(&store, &tenant, "b").await;
        let seq = |events: Vec<conversation_svc::store::Event>| {
            events
                .iter()
                .map(|e| e.conversation_sequence)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            seq(store.conversation_events(&a.id, 0, 10).await.unwrap()),
            vec![1, 2],
            "{}",
            db.name
        );
        assert_eq!(
            seq(store.conversation_events(&b.id, 0, 10).await.unwrap()),
            vec![1, 2],
            "{}: another conversation's events do not show in the numbering",
            db.name
        );

        // A message carries the sequence of the event that added it.
        let mut m = store.begin().await.unwrap();
        let mut c = m
            .conversation_for_update(&tenant, &a.id)
            .await
            .unwrap()
            .unwrap();
        let mut added = Event::about(&c, pb::EventType::MessageAdded as i32, "", now_micros());
        added.message_id = id();
        let message_id = added.message_id.clone();
        let sequence = m.event(added);
        let message = m
            .add_message(
                &mut c,
                NewMessage {
                    sender: pb::SenderKind::Customer as i32,
                    sender_id: String::new(),
                    sender_display_name: "Casey".into(),
                    text: "hello".into(),
                    internal: false,
                },
                message_id,
                sequence,
                now_micros(),
            )
            .await
            .unwrap();
        m.commit(None, &()).await.unwrap();
        assert_eq!(sequence, 3, "{}", db.name);
        assert_eq!(message.sequence, 3);
        let stored = store.message(&message.id).await.unwrap().unwrap();
        assert_eq!(stored.sequence, 3, "{}", db.name);

        // An event built from a stale copy of the conversation would number twice: refused.
        let mut m = store.begin().await.unwrap();
        m.event(Event::about(
            &a,
            pb::EventType::Waiting as i32,
            "",
            now_micros(),
        ));
        let err = m.commit(None, &()).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{}: {err:?}", db.name);
        assert_eq!(
            seq(store.conversation_events(&a.id, 0, 10).await.unwrap()),
            vec![1, 2, 3],
            "{}: nothing of the refused transaction was written",
            db.name
        );
    }
}

/// Sets the label of a conversation (empty to clear) and, when `close`, closes it.
async fn label_conversation(
    store: &Store,
    conv: &conversation_svc::store::Conversation,
    label_id: &str,
    close: bool,
) {
    let mut m = store.begin().await.unwrap();
    let mut c = m
        .conversation_for_update(&conv.tenant_id, &conv.id)
        .await
        .unwrap()
        .unwrap();
    c.status_label_id = label_id.to_owned();
    if close {
        c.state = State::Closed;
    }
    m.save_conversation(&c).await.unwrap();
    m.commit(None, &()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_labels_are_unique_by_name_listed_by_name_and_counted() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let label = |name: &str| StatusLabel {
            id: id(),
            tenant_id: tenant.clone(),
            display_name: name.to_owned(),
        };
        let refund = label("Awaiting refund");
        let billing = label("billing");
        let callback = label("Callback");
        let mut m = store.begin().await.unwrap();
        for l in [&refund, &billing, &callback] {
            m.insert_status_label(l, now_micros()).await.unwrap();
        }
        assert_eq!(m.count_status_labels(&tenant).await.unwrap(), 3);
        m.commit(None, &()).await.unwrap();

        // Names are unique in the tenant whatever their case, not across tenants.
        let mut m = store.begin().await.unwrap();
        let err = m
            .insert_status_label(&label("AWAITING REFUND"), now_micros())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::AlreadyExists(_)),
            "{}: {err:?}",
            db.name
        );
        drop(m);
        let other_tenant = id();
        let mut m = store.begin().await.unwrap();
        m.insert_status_label(
            &StatusLabel {
                tenant_id: other_tenant.clone(),
                ..label("Awaiting refund")
            },
            now_micros(),
        )
        .await
        .unwrap();
        m.commit(None, &()).await.unwrap();

        // By name, case aside, page after page.
        let names =
            |ls: Vec<StatusLabel>| ls.into_iter().map(|l| l.display_name).collect::<Vec<_>>();
        assert_eq!(
            names(store.list_status_labels(&tenant, None, 10).await.unwrap()),
            vec!["Awaiting refund", "billing", "Callback"],
            "{}",
            db.name
        );
        assert_eq!(
            names(
                store
                    .list_status_labels(&tenant, Some("billing"), 10)
                    .await
                    .unwrap()
            ),
            vec!["Callback"],
            "{}",
            db.name
        );

        // Renaming onto another label's name is refused; another tenant's label is absent.
        let mut m = store.begin().await.unwrap();
        assert!(
            m.status_label_for_update(&other_tenant, &refund.id)
                .await
                .unwrap()
                .is_none()
        );
        let mut renamed = m
            .status_label_for_update(&tenant, &billing.id)
            .await
            .unwrap()
            .unwrap();
        renamed.display_name = "callback".into();
        let err = m
            .update_status_label(&renamed, now_micros())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::AlreadyExists(_)),
            "{}: {err:?}",
            db.name
        );
        drop(m);
        let mut m = store.begin().await.unwrap();
        renamed.display_name = "Billing".into();
        m.update_status_label(&renamed, now_micros()).await.unwrap();
        m.commit(None, &()).await.unwrap();
        assert_eq!(
            store.status_label(&tenant, &billing.id).await.unwrap(),
            Some(renamed.clone())
        );

        // Counts: open conversations by label (by name), then always the row for none.
        let queue_conv = create(&store, &tenant, "a").await;
        let b = create(&store, &tenant, "b").await;
        let c = create(&store, &tenant, "c").await;
        let closed = create(&store, &tenant, "d").await;
        let _unlabelled = create(&store, &tenant, "e").await;
        let theirs = create(&store, &other_tenant, "a").await;
        label_conversation(&store, &queue_conv, &billing.id, false).await;
        label_conversation(&store, &b, &refund.id, false).await;
        label_conversation(&store, &c, &billing.id, false).await;
        label_conversation(&store, &closed, &billing.id, true).await;
        label_conversation(&store, &theirs, &billing.id, false).await;
        let count = |label: &StatusLabel, n: i64| StatusCount {
            status_label_id: label.id.clone(),
            display_name: label.display_name.clone(),
            open_conversations: n,
        };
        let none = |n: i64| StatusCount {
            status_label_id: String::new(),
            display_name: String::new(),
            open_conversations: n,
        };
        assert_eq!(
            store.count_by_status(&tenant, None).await.unwrap(),
            vec![count(&refund, 1), count(&renamed, 2), none(1)],
            "{}",
            db.name
        );
        assert_eq!(
            store
                .count_by_status(&tenant, Some(&queue_conv.queue_id))
                .await
                .unwrap(),
            vec![count(&renamed, 1), none(0)],
            "{}: only that queue",
            db.name
        );
        assert_eq!(
            store.count_by_status(&id(), None).await.unwrap(),
            vec![none(0)],
            "{}: a tenant without conversations still has the row for none",
            db.name
        );

        // Deleting finds every conversation of the tenant carrying it, closed ones too.
        let mut m = store.begin().await.unwrap();
        assert!(m.delete_status_label(&tenant, &billing.id).await.unwrap());
        let mut expected = vec![queue_conv.id.clone(), c.id.clone(), closed.id.clone()];
        expected.sort();
        assert_eq!(
            m.conversations_with_label(&tenant, &billing.id)
                .await
                .unwrap(),
            expected,
            "{}",
            db.name
        );
        m.commit(None, &()).await.unwrap();
        let mut m = store.begin().await.unwrap();
        assert!(!m.delete_status_label(&tenant, &billing.id).await.unwrap());
        assert!(
            !m.delete_status_label(&other_tenant, &refund.id)
                .await
                .unwrap(),
            "{}: another tenant's label is not deleted",
            db.name
        );
        drop(m);
        assert!(
            store
                .status_label(&tenant, &refund.id)
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_responses_are_found_by_keyword_prefix_page_by_page() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let phrase = |keyword: String| CannedResponse {
            id: id(),
            tenant_id: tenant.clone(),
            text: format!("text of {keyword}"),
            keyword,
            update_time: now_micros(),
        };
        // 300 keywords over a few prefixes, inserted out of order, some upper case.
        let mut keywords: Vec<String> = (0..300)
            .map(|i| {
                let stem = ["ref", "Refund", "reg", "re", "ship"][i % 5];
                format!("{stem}{:03}", (i * 7919) % 1000)
            })
            .collect();
        keywords.extend([
            "r".into(),
            "rf".into(),
            "réf".into(),
            "ref\u{10FFFF}".into(),
        ]);
        let mut m = store.begin().await.unwrap();
        for keyword in &keywords {
            m.insert_canned_response(&phrase(keyword.clone()))
                .await
                .unwrap();
        }
        m.commit(None, &()).await.unwrap();

        // A keyword is unique in the tenant whatever its case.
        let mut m = store.begin().await.unwrap();
        let err = m
            .insert_canned_response(&phrase("REF000".into()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::AlreadyExists(_)),
            "{}: {err:?}",
            db.name
        );
        drop(m);

        let all = |prefix: &str| {
            let store = store.clone();
            let tenant = tenant.clone();
            let prefix = prefix.to_owned();
            async move {
                let mut found = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = store
                        .search_canned_responses(&tenant, &prefix, after.as_deref(), 7)
                        .await
                        .unwrap();
                    assert!(page.len() <= 7);
                    let Some(last) = page.last() else { break };
                    after = Some(last.keyword.to_lowercase());
                    found.extend(page.into_iter().map(|p| p.keyword));
                }
                found
            }
        };
        for prefix in [
            "",
            "r",
            "RE",
            "ref",
            "refu",
            "réf",
            "ref\u{10FFFF}",
            "s",
            "x",
        ] {
            let mut expected: Vec<String> = keywords
                .iter()
                .filter(|k| k.to_lowercase().starts_with(&prefix.to_lowercase()))
                .cloned()
                .collect();
            expected.sort_by_key(|k| k.to_lowercase());
            assert_eq!(
                all(prefix).await,
                expected,
                "{}: prefix {prefix:?}",
                db.name
            );
        }
        assert!(
            store
                .search_canned_responses(&id(), "", None, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}: another tenant finds none",
            db.name
        );

        // Update and delete, never across tenants.
        let first = store
            .search_canned_responses(&tenant, "ship", None, 1)
            .await
            .unwrap()
            .remove(0);
        let mut m = store.begin().await.unwrap();
        assert!(
            m.canned_response_for_update(&id(), &first.id)
                .await
                .unwrap()
                .is_none()
        );
        let mut changed = m
            .canned_response_for_update(&tenant, &first.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changed, first);
        changed.keyword = keywords[1].to_uppercase();
        let err = m.update_canned_response(&changed).await.unwrap_err();
        assert!(
            matches!(err, Error::AlreadyExists(_)),
            "{}: {err:?}",
            db.name
        );
        drop(m);
        let mut m = store.begin().await.unwrap();
        changed.keyword = "zz-shipping".into();
        changed.text = "We ship in two days.".into();
        changed.update_time += 1;
        m.update_canned_response(&changed).await.unwrap();
        m.commit(None, &()).await.unwrap();
        assert_eq!(
            store
                .search_canned_responses(&tenant, "ZZ", None, 10)
                .await
                .unwrap(),
            vec![changed.clone()],
            "{}",
            db.name
        );
        let mut m = store.begin().await.unwrap();
        assert!(!m.delete_canned_response(&id(), &changed.id).await.unwrap());
        assert!(
            m.delete_canned_response(&tenant, &changed.id)
                .await
                .unwrap()
        );
        assert!(
            !m.delete_canned_response(&tenant, &changed.id)
                .await
                .unwrap()
        );
        m.commit(None, &()).await.unwrap();
        assert!(
            store
                .search_canned_responses(&tenant, "zz", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

/// Waits for positive evidence that `writer` is blocked behind an open write transaction,
/// failing if it finishes first: on PostgreSQL a backend of this database waiting on a
/// lock; on SQLite the one writer connection held by the open transaction.
async fn wait_until_writer_blocks<T>(store: &Store, writer: &tokio::task::JoinHandle<T>, db: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            !writer.is_finished(),
            "{db}: the second writer committed past an open lower sequence"
        );
        if writer_is_blocked(store).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{db}: the second writer never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn writer_is_blocked(store: &Store) -> bool {
    let pool = &store.db().pool;
    match store.db().dialect {
        switchboard_server_kit::db::Dialect::Postgres => {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            waiting > 0
        }
        switchboard_server_kit::db::Dialect::Sqlite => {
            // One writer connection: while the open transaction holds it, every other
            // writer queues for it.
            let writer = store.db().writer();
            writer.size() == 1 && writer.num_idle() == 0
        }
    }
}

/// Assigns `conv` from a queue whose wrap-up time limit is `limit_us`, then ends it at
/// `ended` as EndConversation does, with a reopen window of one hour. Returns the deadline.
async fn end_with_limit(
    store: &Store,
    conv: &conversation_svc::store::Conversation,
    limit_us: i64,
    ended: i64,
) -> Option<i64> {
    assign(store, conv, &id()).await;
    let mut m = store.begin().await.unwrap();
    m.set_wrap_up_limit(&conv.id, limit_us).await.unwrap();
    let mut c = m
        .conversation_for_update(&conv.tenant_id, &conv.id)
        .await
        .unwrap()
        .unwrap();
    c.state = State::WrapUp;
    m.save_conversation(&c).await.unwrap();
    let deadline = m.start_wrap_up_clock(&conv.id, ended, 3_600).await.unwrap();
    m.commit(None, &()).await.unwrap();
    deadline
}

/// Conversations left in WRAP_UP past their limit are found and closed once, with the
/// owner's capacity released; one whose wrap-up was submitted first, or with no limit, is
/// left alone. The sweep takes the time as an argument, so no test waits for a clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_wrap_ups_are_closed_once_and_submitted_ones_never() {
    use conversation_svc::api::close_due_wrap_ups;
    for (db, store) in support::stores().await {
        let name = db.name;
        let tenant = id();
        let t0 = now_micros();
        let second = 1_000_000;
        let expiring = create(&store, &tenant, "visitor-expiring").await;
        let submitted = create(&store, &tenant, "visitor-submitted").await;
        let unlimited = create(&store, &tenant, "visitor-unlimited").await;
        assert_eq!(
            end_with_limit(&store, &expiring, second, t0).await,
            Some(t0 + second)
        );
        end_with_limit(&store, &submitted, second, t0).await;
        assert_eq!(end_with_limit(&store, &unlimited, 0, t0).await, None);
        assert_eq!(
            store.next_wrap_up_deadline().await.unwrap(),
            Some(t0 + second),
            "{name}"
        );

        // Not due yet.
        let swept = close_due_wrap_ups(&store, t0 + second - 1).await.unwrap();
        assert_eq!(swept.closed, 0, "{name}");
        // The agent submits wrap-up first: that close stops the clock.
        close(&store, &submitted).await;

        // Two replicas sweep at once: one close, one CLOSED event.
        let other = Store::open(&db.url).await.unwrap();
        let (a, b) = tokio::join!(
            close_due_wrap_ups(&store, t0 + second),
            close_due_wrap_ups(&other, t0 + second)
        );
        assert_eq!(a.unwrap().closed + b.unwrap().closed, 1, "{name}");
        let again = close_due_wrap_ups(&store, t0 + 10 * second).await.unwrap();
        assert_eq!(again.closed, 0, "{name}: closed once");
        assert_eq!(store.next_wrap_up_deadline().await.unwrap(), None, "{name}");

        let closed = store
            .conversation(&tenant, &expiring.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(closed.state, State::Closed, "{name}");
        assert_eq!(
            closed.close_reason,
            pb::CloseReason::WrapUpTimeLimit as i32,
            "{name}"
        );
        assert_eq!(closed.close_time, Some(t0 + second), "{name}");
        let events = store
            .conversation_events(&expiring.id, 0, 100)
            .await
            .unwrap();
        let closes: Vec<&Event> = events
            .iter()
            .filter(|e| e.kind == pb::EventType::Closed as i32)
            .collect();
        assert_eq!(closes.len(), 1, "{name}");
        assert_eq!(closes[0].actor_id, "", "{name}: the system closed it");
        assert_eq!(closes[0].detail, "wrap_up_timeout", "{name}");
        assert_eq!(closes[0].reopen_window_secs, 3_600, "{name}");
        assert_eq!(closes[0].agent_id, closed.owner_agent_id, "{name}");
        let segments = store.segments(&expiring.id, 0, 10).await.unwrap();
        assert_eq!(segments[0].end_reason, "closed", "{name}");
        assert_eq!(segments[0].end_time, Some(t0 + second), "{name}");

        let mut m = store.begin().await.unwrap();
        let commands = m
            .claim_commands(t0 + 100 * second, t0 + 200 * second, 100)
            .await
            .unwrap();
        m.commit(None, &()).await.unwrap();
        let releases: Vec<&str> = commands
            .iter()
            .filter(|c| c.kind == CommandKind::ReleaseCapacity)
            .map(|c| c.conversation_id.as_str())
            .collect();
        assert_eq!(releases, vec![expiring.id.as_str()], "{name}");

        let kept = store
            .conversation(&tenant, &submitted.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.close_reason, 0, "{name}: not closed again");
        let waiting = store
            .conversation(&tenant, &unlimited.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(waiting.state, State::WrapUp, "{name}: no limit, no close");
    }
}

/// First messages from one address arriving together (a customer double-clicking, two
/// connector replicas) create one contact; every conversation is stored, none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_conversations_of_one_address_share_one_contact() {
    for (db, store) in support::stores().await {
        let tenant = id();
        let creates = (0..8).map(|_| {
            let store = store.clone();
            let tenant = tenant.clone();
            tokio::spawn(async move {
                let mut m = store.begin().await?;
                let conv = m
                    .create_conversation(&new_conversation(&tenant, "visitor-race", "Casey"))
                    .await?;
                m.commit(None, &()).await?;
                Ok::<_, Error>(conv)
            })
        });
        let mut contacts = std::collections::HashSet::new();
        for created in futures::future::join_all(creates).await {
            let conv = created
                .expect("task")
                .unwrap_or_else(|e| panic!("{}: a create failed: {e}", db.name));
            contacts.insert(conv.contact.id);
        }
        assert_eq!(contacts.len(), 1, "{}: one contact", db.name);
    }
}
