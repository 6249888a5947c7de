//! Changing and deleting queues through the gateway on SQLite and PostgreSQL: an update
//! applies to conversations already waiting at once, a bad update changes nothing, and a
//! queue is deleted only once nothing depends on it.

use prost_types::FieldMask;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::queue_service_client::QueueServiceClient;
use switchboard_tests::flows::{
    chat_in, offer_stream, pending_offer, serve_queues, set_presence, take, wait_for_capacity,
    wait_for_pass, wait_for_waiting, web_chat_queue,
};
use switchboard_tests::{Backend, Harness, rid};
use tonic::Code;

switchboard_tests::on_each_backend!(
    an_update_applies_to_waiting_work_at_once,
    a_bad_update_changes_nothing,
    a_queue_is_deleted_only_once_nothing_depends_on_it,
    decisions_are_listed_by_agent_and_say_who_was_not_a_member,
    a_lost_manual_pick_race_is_aborted,
    a_manual_pick_needs_the_queues_skills,
);

async fn started(backend: &Backend) -> Harness {
    Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()))
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

fn update(queue: routing::Queue, paths: &[&str]) -> routing::UpdateQueueRequest {
    routing::UpdateQueueRequest {
        request_id: rid(),
        queue: Some(queue),
        update_mask: mask(paths),
    }
}

async fn get_queue(h: &Harness, queue_id: &str) -> Result<routing::Queue, tonic::Status> {
    Ok(h.queues("admin")
        .get_queue(routing::GetQueueRequest {
            queue_id: queue_id.to_owned(),
        })
        .await?
        .into_inner()
        .queue
        .expect("queue"))
}

/// Demo agent `handle` claims waiting conversation `conversation_id` (manual pick).
fn claim_as(
    h: &Harness,
    handle: &str,
    conversation_id: String,
) -> impl Future<Output = Result<tonic::Response<routing::ClaimWaitingWorkResponse>, tonic::Status>>
+ use<> {
    let mut agent = h.agent(handle);
    async move {
        agent
            .claim_waiting_work(routing::ClaimWaitingWorkRequest {
                request_id: rid(),
                conversation_id,
            })
            .await
    }
}

async fn delete(h: &Harness, queue_id: &str) -> Result<(), tonic::Status> {
    h.queues("admin")
        .delete_queue(routing::DeleteQueueRequest {
            request_id: rid(),
            queue_id: queue_id.to_owned(),
        })
        .await
        .map(|_| ())
}

async fn an_update_applies_to_waiting_work_at_once(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let skilled = routing::Queue {
        required_skills: vec![routing::SkillRequirement {
            name: "billing".into(),
            min_level: 3,
        }],
        priority: 2,
        ..Default::default()
    };
    let queue_id = web_chat_queue(&h, "Billing", skilled, &["agent1"]).await;
    let before = get_queue(&h, &queue_id).await.expect("queue");
    let mut offers = offer_stream(&h, "agent1").await;
    set_presence(&h, "agent1", routing::Presence::Available).await;
    let chat = chat_in(&h, &queue_id, "update-skills").await;

    // agent1 lacks the skill: the decision says so, and nothing is offered.
    wait_for_pass(&h, &chat.id, &agent1, routing::PassReason::MissingSkill).await;

    // Dropping the requirement offers the waiting conversation without anything else
    // happening to it.
    let updated = h
        .queues("admin")
        .update_queue(update(
            routing::Queue {
                id: queue_id.clone(),
                // Not in the mask: ignored.
                priority: 9,
                display_name: "ignored".into(),
                ..Default::default()
            },
            &["requiredSkills"],
        ))
        .await
        .expect("update")
        .into_inner()
        .queue
        .expect("queue");
    assert!(updated.required_skills.is_empty());
    assert_eq!(updated.priority, 2);
    assert_eq!(updated.display_name, "Billing");
    assert_eq!(updated.accepted_channels, before.accepted_channels);
    assert_eq!(updated.create_time, before.create_time);
    assert_ne!(updated.update_time, before.update_time);
    assert_eq!(get_queue(&h, &queue_id).await.expect("queue"), updated);
    let offer = pending_offer(&mut offers, &chat.id).await;
    assert_eq!(offer.queue_id, queue_id);

    // The queue's decision records, newest first: the offer, then the passes before it;
    // a time range ending before the offer leaves it out.
    let by_queue = |range: Option<switchboard_proto::common::v1::TimeRange>| {
        let mut queues = h.queues("supervisor");
        let queue_id = queue_id.clone();
        async move {
            queues
                .list_routing_decisions(routing::ListRoutingDecisionsRequest {
                    queue_id,
                    decide_time_range: range,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().routing_decisions)
        }
    };
    let decisions = by_queue(None).await.expect("decisions of the queue");
    assert!(decisions.len() >= 2, "{decisions:?}");
    assert_eq!(decisions[0].offer_id, offer.id);
    assert!(
        decisions
            .iter()
            .all(|d| d.queue_id == queue_id && !d.id.is_empty())
    );
    let ids: std::collections::HashSet<&str> = decisions.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), decisions.len(), "ids are unique");
    let before_offer = by_queue(Some(switchboard_proto::common::v1::TimeRange {
        start_time: Some(prost_types::Timestamp::default()),
        end_time: decisions[0].decide_time,
    }))
    .await
    .expect("decisions before the offer");
    assert_eq!(before_offer.len(), decisions.len() - 1);
    assert!(before_offer.iter().all(|d| d.offer_id.is_empty()));
    let unnamed = h
        .queues("supervisor")
        .list_routing_decisions(routing::ListRoutingDecisionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unnamed.code(), Code::InvalidArgument, "{unnamed:?}");

    // A retry of the same update answers the same and changes nothing more; "*" replaces
    // every setting.
    let retry = update(
        routing::Queue {
            id: queue_id.clone(),
            display_name: "Billing and payments".into(),
            accepted_channels: updated.accepted_channels.clone(),
            priority: 5,
            ..Default::default()
        },
        &["*"],
    );
    let first = h
        .queues("admin")
        .update_queue(retry.clone())
        .await
        .expect("update all")
        .into_inner();
    let again = h
        .queues("admin")
        .update_queue(retry)
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(first, again);
    let all = first.queue.expect("queue");
    assert_eq!(
        (
            all.display_name.as_str(),
            all.priority,
            all.max_open_per_agent
        ),
        ("Billing and payments", 5, 0)
    );
    assert_eq!(get_queue(&h, &queue_id).await.expect("queue"), all);
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_bad_update_changes_nothing(backend: &Backend) {
    let h = started(backend).await;
    let a = web_chat_queue(&h, "A", routing::Queue::default(), &[]).await;
    let b = web_chat_queue(&h, "B", routing::Queue::default(), &[]).await;
    let c = web_chat_queue(&h, "C", routing::Queue::default(), &[]).await;
    let overflow = |from: &str, to: &str| {
        update(
            routing::Queue {
                id: from.to_owned(),
                overflow_queue_id: to.to_owned(),
                overflow_after: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &["overflow_queue_id", "overflow_after"],
        )
    };
    let mut admin = h.queues("admin");
    admin.update_queue(overflow(&a, &b)).await.expect("A → B");
    admin.update_queue(overflow(&b, &c)).await.expect("B → C");
    let queues = [
        get_queue(&h, &a).await.unwrap(),
        get_queue(&h, &b).await.unwrap(),
        get_queue(&h, &c).await.unwrap(),
    ];

    let refusing = admin.clone();
    let refused = |request: routing::UpdateQueueRequest| {
        let mut admin = refusing.clone();
        async move { admin.update_queue(request).await.unwrap_err() }
    };
    let cycle = refused(overflow(&c, &a)).await;
    assert_eq!(cycle.code(), Code::InvalidArgument, "{cycle:?}");
    assert!(
        cycle.message().contains("cycle: C → A → B → C"),
        "{}",
        cycle.message()
    );
    let itself = refused(overflow(&a, &a)).await;
    assert_eq!(itself.code(), Code::InvalidArgument, "{itself:?}");
    assert!(itself.message().contains("itself"), "{}", itself.message());
    let unknown_target = refused(overflow(&a, &uuid::Uuid::new_v4().to_string())).await;
    assert_eq!(unknown_target.code(), Code::NotFound, "{unknown_target:?}");

    let id_only = routing::Queue {
        id: a.clone(),
        max_open_per_agent: -1,
        program_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };
    for (paths, code, says) in [
        (vec![], Code::InvalidArgument, "update_mask"),
        (vec!["colour"], Code::InvalidArgument, "not a queue setting"),
        (
            vec!["programId"],
            Code::InvalidArgument,
            "program_id cannot",
        ),
        (
            vec!["max_open_per_agent"],
            Code::InvalidArgument,
            "negative",
        ),
        (vec!["accepted_channels"], Code::InvalidArgument, "channel"),
    ] {
        let status = refused(update(id_only.clone(), &paths)).await;
        assert_eq!(status.code(), code, "{paths:?}: {status:?}");
        assert!(status.message().contains(says), "{paths:?}: {status:?}");
    }
    let taken = refused(update(
        routing::Queue {
            id: a.clone(),
            display_name: "B".into(),
            ..Default::default()
        },
        &["display_name"],
    ))
    .await;
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let missing = refused(update(
        routing::Queue {
            id: uuid::Uuid::new_v4().to_string(),
            priority: 1,
            ..Default::default()
        },
        &["priority"],
    ))
    .await;
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // Another tenant's administrator and an agent reach nothing.
    let raise_a = || {
        update(
            routing::Queue {
                id: a.clone(),
                priority: 1,
                ..Default::default()
            },
            &["priority"],
        )
    };
    let (_, other_admin) = h
        .new_tenant_with_administrator("Initech", "Ivy Admin", "ivy@initech.test")
        .await;
    let stranger = QueueServiceClient::with_interceptor(h.channel.clone(), other_admin)
        .update_queue(raise_a())
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::NotFound, "{stranger:?}");
    let agent = h
        .queues("agent1")
        .update_queue(raise_a())
        .await
        .unwrap_err();
    assert_eq!(agent.code(), Code::PermissionDenied, "{agent:?}");

    // The same request id for a different change is refused too.
    let first = update(
        routing::Queue {
            id: b.clone(),
            priority: 3,
            ..Default::default()
        },
        &["priority"],
    );
    admin.update_queue(first.clone()).await.expect("priority");
    let reused = refused(routing::UpdateQueueRequest {
        queue: Some(routing::Queue {
            id: b.clone(),
            priority: 4,
            ..Default::default()
        }),
        ..first
    })
    .await;
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");

    let after = [
        get_queue(&h, &a).await.unwrap(),
        get_queue(&h, &b).await.unwrap(),
        get_queue(&h, &c).await.unwrap(),
    ];
    assert_eq!(after[0], queues[0]);
    assert_eq!(after[2], queues[2]);
    assert_eq!(after[1].priority, 3);
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_queue_is_deleted_only_once_nothing_depends_on_it(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let doomed = web_chat_queue(&h, "Seasonal", routing::Queue::default(), &["agent1"]).await;
    let feeder = web_chat_queue(&h, "Feeder", routing::Queue::default(), &[]).await;
    let mut admin = h.queues("admin");

    // Waiting: refused (once routing-svc has it: creating answers before).
    let chat = chat_in(&h, &doomed, "delete-waiting").await;
    wait_for_waiting(&h, &doomed, 1).await;
    let waiting = delete(&h, &doomed).await.unwrap_err();
    assert_eq!(waiting.code(), Code::FailedPrecondition, "{waiting:?}");
    assert!(
        waiting.message().contains("1 conversations waiting"),
        "{waiting:?}"
    );

    // Held by an agent: refused.
    take(&h, "agent1", &chat.id).await;
    wait_for_capacity(&h, "agent1", 1).await;
    let held = delete(&h, &doomed).await.unwrap_err();
    assert_eq!(held.code(), Code::FailedPrecondition, "{held:?}");
    assert!(held.message().contains("held by agents"), "{held:?}");

    // Another queue overflows into it: refused, naming that queue.
    admin
        .update_queue(update(
            routing::Queue {
                id: feeder.clone(),
                overflow_queue_id: doomed.clone(),
                overflow_after: Some(prost_types::Duration {
                    seconds: 600,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &["overflow_queue_id", "overflow_after"],
        ))
        .await
        .expect("feeder overflows into it");
    h.supervisor("supervisor")
        .force_close_conversation(conv::ForceCloseConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            reason: String::new(),
        })
        .await
        .expect("force close");
    wait_for_capacity(&h, "agent1", 0).await;
    let overflowed = delete(&h, &doomed).await.unwrap_err();
    assert_eq!(
        overflowed.code(),
        Code::FailedPrecondition,
        "{overflowed:?}"
    );
    assert!(overflowed.message().contains("(Feeder)"), "{overflowed:?}");
    assert!(
        !overflowed.message().contains("held"),
        "the force close released the hold: {overflowed:?}"
    );
    admin
        .update_queue(update(
            routing::Queue {
                id: feeder.clone(),
                ..Default::default()
            },
            &["overflow_queue_id", "overflow_after"],
        ))
        .await
        .expect("feeder overflows nowhere");

    // Nothing depends on it any more: deleted, once; agents stop serving it.
    let request = routing::DeleteQueueRequest {
        request_id: rid(),
        queue_id: doomed.clone(),
    };
    admin.delete_queue(request.clone()).await.expect("delete");
    admin
        .delete_queue(request)
        .await
        .expect("a retry answers OK");
    assert_eq!(
        delete(&h, &doomed).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        get_queue(&h, &doomed).await.unwrap_err().code(),
        Code::NotFound
    );
    let profile = admin
        .get_agent_profile(routing::GetAgentProfileRequest { agent_id: agent1 })
        .await
        .expect("profile")
        .into_inner()
        .agent_profile
        .expect("profile");
    assert_eq!(profile.queue_ids, vec![h.creds.queue_id.clone()]);
    let create = h
        .bot_conversations()
        .create_conversation(conv::CreateConversationRequest {
            request_id: rid(),
            channel: switchboard_proto::common::v1::Channel::Webchat as i32,
            queue_id: doomed.clone(),
            channel_address: "delete-after".into(),
            first_message: "Hello".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(create.code(), Code::NotFound, "{create:?}");
    h.stop().await.expect("the suite stops cleanly");
}

/// The supervisor's question "why was this chat not offered to Bob?": decisions listed by
/// agent show where an agent was considered, and a conversation's decisions name an agent
/// that was not a member of the queue at the time, even after it joined.
async fn decisions_are_listed_by_agent_and_say_who_was_not_a_member(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let agent2 = h.creds.user("agent2").id.clone();
    let queue_id = web_chat_queue(&h, "Billing", routing::Queue::default(), &["agent1"]).await;
    serve_queues(&h, "agent2", &[&h.creds.queue_id]).await;
    let mut offers = offer_stream(&h, "agent1").await;
    set_presence(&h, "agent1", routing::Presence::Available).await;
    let first = chat_in(&h, &queue_id, "decisions-by-agent-1").await;
    let offer = pending_offer(&mut offers, &first.id).await;

    let list = |request: routing::ListRoutingDecisionsRequest| {
        let mut queues = h.queues("supervisor");
        async move {
            queues
                .list_routing_decisions(request)
                .await
                .map(|r| r.into_inner().routing_decisions)
        }
    };
    let of_agent = |agent_id: &str, conversation_id: &str| routing::ListRoutingDecisionsRequest {
        agent_id: agent_id.to_owned(),
        conversation_id: conversation_id.to_owned(),
        ..Default::default()
    };
    let reason_of = |decision: &routing::RoutingDecision, agent_id: &str| {
        decision
            .candidates
            .iter()
            .find(|c| c.agent_id == agent_id)
            .map(|c| c.reason)
    };

    // agent1 was chosen: its decisions say so; agent2 was never considered.
    let agent1_decisions = list(of_agent(&agent1, ""))
        .await
        .expect("agent1's decisions");
    assert_eq!(agent1_decisions[0].offer_id, offer.id);
    assert_eq!(
        reason_of(&agent1_decisions[0], &agent1),
        Some(routing::PassReason::Chosen as i32)
    );
    assert!(
        agent1_decisions
            .iter()
            .all(|d| reason_of(d, &agent1).is_some())
    );
    let in_other_queue = list(routing::ListRoutingDecisionsRequest {
        queue_id: h.creds.queue_id.clone(),
        ..of_agent(&agent1, "")
    })
    .await
    .expect("agent1's decisions in the demo queue");
    assert!(
        in_other_queue
            .iter()
            .all(|d| d.queue_id == h.creds.queue_id)
    );
    assert!(
        list(of_agent(&agent2, ""))
            .await
            .expect("agent2's decisions")
            .iter()
            .all(|d| d.conversation_id != first.id)
    );

    // Asked about this chat, agent2 is named: not a member of Billing then.
    let why_not = list(of_agent(&agent2, &first.id))
        .await
        .expect("why not agent2");
    assert!(!why_not.is_empty());
    for decision in &why_not {
        let last = decision.candidates.last().expect("a candidate");
        assert_eq!(
            (last.agent_id.as_str(), last.reason),
            (agent2.as_str(), routing::PassReason::NotAMember as i32)
        );
    }

    // agent2 joins Billing (Away): the next chat's decisions consider it for what it is,
    // while the first chat's still say it was not a member then.
    serve_queues(&h, "agent2", &[&h.creds.queue_id, &queue_id]).await;
    set_presence(&h, "agent2", routing::Presence::Away).await;
    let second = chat_in(&h, &queue_id, "decisions-by-agent-2").await;
    wait_for_pass(&h, &second.id, &agent2, routing::PassReason::NotAvailable).await;
    let now_member = list(of_agent(&agent2, &second.id))
        .await
        .expect("second chat");
    assert!(now_member.iter().all(|d| {
        d.candidates
            .iter()
            .all(|c| c.reason != routing::PassReason::NotAMember as i32)
    }));
    let listed = list(of_agent(&agent2, ""))
        .await
        .expect("agent2's decisions");
    assert!(listed.iter().any(|d| d.conversation_id == second.id));
    let still = list(of_agent(&agent2, &first.id))
        .await
        .expect("first chat again");
    assert_eq!(still, why_not);

    // An agent routing has no profile for, and a malformed id, are clear errors.
    let unknown = list(of_agent(&rid(), "")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let malformed = list(of_agent("not-a-uuid", "")).await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument, "{malformed:?}");
    drop(offers);
    h.stop().await.expect("the suite stops cleanly");
}

/// Two agents pick the same waiting conversation of a manual-pick queue at the same
/// moment: one gets it, the other ABORTED (on either backend), and capacity counts once.
async fn a_lost_manual_pick_race_is_aborted(backend: &Backend) {
    let h = started(backend).await;
    let manual = routing::Queue {
        assignment_method: routing::AssignmentMethod::ManualPick as i32,
        ..Default::default()
    };
    let queue_id = web_chat_queue(&h, "Pick yourself", manual, &["agent1", "agent2"]).await;
    set_presence(&h, "agent1", routing::Presence::Available).await;
    set_presence(&h, "agent2", routing::Presence::Available).await;
    let claim =
        |handle: &'static str, conversation_id: String| claim_as(&h, handle, conversation_id);
    let mut held = [0, 0];
    for round in 0..3 {
        let chat = chat_in(&h, &queue_id, &format!("pick-race-{round}")).await;
        wait_for_waiting(&h, &queue_id, 1).await;
        let (one, two) = tokio::join!(
            claim("agent1", chat.id.clone()),
            claim("agent2", chat.id.clone())
        );
        let (won, lost, winner) = match (one, two) {
            (Ok(won), Err(lost)) => (won, lost, 0),
            (Err(lost), Ok(won)) => (won, lost, 1),
            other => panic!("exactly one claim wins: {other:?}"),
        };
        assert_eq!(lost.code(), Code::Aborted, "{lost:?}");
        assert!(lost.message().contains("another agent"), "{lost:?}");
        assert!(won.into_inner().offer.is_some());
        held[winner] += 1;
        wait_for_waiting(&h, &queue_id, 0).await;
    }
    wait_for_capacity(&h, "agent1", held[0]).await;
    wait_for_capacity(&h, "agent2", held[1]).await;
    h.stop().await.expect("the suite stops cleanly");
}

/// A manual pick is held to the queue's required skills as an offer is: an agent without
/// them is refused with the skill it lacks and nothing changes; one with them takes it.
async fn a_manual_pick_needs_the_queues_skills(backend: &Backend) {
    let h = started(backend).await;
    let manual = routing::Queue {
        assignment_method: routing::AssignmentMethod::ManualPick as i32,
        required_skills: vec![routing::SkillRequirement {
            name: "billing".into(),
            min_level: 3,
        }],
        ..Default::default()
    };
    let queue_id = web_chat_queue(&h, "Billing picks", manual, &["agent1"]).await;
    // agent2 has the skill, at a level above the minimum and in another case.
    let agent2 = h.creds.user("agent2");
    h.queues("admin")
        .set_agent_profile(routing::SetAgentProfileRequest {
            request_id: rid(),
            agent_profile: Some(routing::AgentProfile {
                agent_id: agent2.id.clone(),
                display_name: agent2.display_name.clone(),
                capacity_profile_id: h.creds.capacity_profile_id.clone(),
                queue_ids: vec![h.creds.queue_id.clone(), queue_id.clone()],
                skills: vec![routing::AgentSkill {
                    name: "Billing".into(),
                    level: 4,
                }],
                ..Default::default()
            }),
        })
        .await
        .expect("agent2's profile");
    set_presence(&h, "agent1", routing::Presence::Available).await;
    set_presence(&h, "agent2", routing::Presence::Available).await;
    let chat = chat_in(&h, &queue_id, "pick-skills").await;
    wait_for_waiting(&h, &queue_id, 1).await;
    let claim = |handle: &'static str| claim_as(&h, handle, chat.id.clone());

    let refused = claim("agent1").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("billing") && refused.message().contains('3'),
        "{refused:?}"
    );
    // Nothing changed: still waiting, agent1 holds nothing.
    wait_for_waiting(&h, &queue_id, 1).await;
    wait_for_capacity(&h, "agent1", 0).await;

    let taken = claim("agent2").await.expect("agent2 has the skill");
    assert_eq!(
        taken.into_inner().offer.expect("offer").conversation_id,
        chat.id
    );
    wait_for_waiting(&h, &queue_id, 0).await;
    wait_for_capacity(&h, "agent2", 1).await;
    h.stop().await.expect("the suite stops cleanly");
}
