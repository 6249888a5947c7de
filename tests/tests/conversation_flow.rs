//! One web-chat conversation from creation to the created-and-closed and queue reports, driven through
//! the gateway with the demo credentials, on SQLite and (when configured) PostgreSQL.

use std::time::Duration;

use switchboard_proto::common::v1::{Channel, TimeRange};
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::conversation::v1::stream_conversation_response::Update as ConversationUpdate;
use switchboard_proto::reporting::v1 as rep;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update as OfferUpdate;
use switchboard_tests::flows::{create_team, set_teams};
use switchboard_tests::{Backend, Harness, eventually, rid};
use tokio_stream::StreamExt;

const CARD: &str = "4111 1111 1111 1111";

switchboard_tests::on_each_backend!(a_web_chat_flows_from_bot_to_report);
async fn a_web_chat_flows_from_bot_to_report(backend: &Backend) {
    let harness = Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()));
    flow(&harness).await;
    harness.stop().await.expect("every service stops cleanly");
}

async fn flow(h: &Harness) {
    let agent1 = h.creds.user("agent1").clone();
    let mut agent = h.agent("agent1");

    // The agent goes Available and streams offers.
    let state = agent
        .set_presence(routing::SetPresenceRequest {
            request_id: rid(),
            agent_id: String::new(),
            presence: routing::Presence::Available as i32,
            reason: String::new(),
        })
        .await
        .expect("set presence")
        .into_inner()
        .agent_state
        .expect("agent state");
    assert_eq!(state.presence, routing::Presence::Available as i32);
    assert_eq!(state.capacity_used, 0);
    let mut offers = agent
        .stream_offers(routing::StreamOffersRequest {})
        .await
        .expect("stream offers")
        .into_inner();
    // The desktop's one stream starts with the agent's own state, then the end of the
    // snapshot (nothing is pending yet).
    let first = next_offer_update(&mut offers).await;
    let Some(OfferUpdate::AgentState(own)) = first else {
        panic!("the offer stream starts with the agent's state, got {first:?}");
    };
    assert_eq!(own.agent_id, agent1.id);
    assert_eq!(own.presence, routing::Presence::Available as i32);
    let second = next_offer_update(&mut offers).await;
    assert!(
        matches!(second, Some(OfferUpdate::SnapshotEnd(_))),
        "then the end of the snapshot, got {second:?}"
    );

    // The bot hands a web chat to the queue with pre-chat data and its transcript.
    let created = h
        .bot_conversations()
        .create_conversation(conv::CreateConversationRequest {
            request_id: rid(),
            channel: Channel::Webchat as i32,
            queue_id: h.creds.queue_id.clone(),
            contact: Some(conv::Contact {
                display_name: Some("Casey Customer".into()),
                ..Default::default()
            }),
            channel_address: "visitor-42".into(),
            pre_chat_data: vec![conv::PreChatField {
                name: "order_number".into(),
                label: "Order number".into(),
                value: "A-1001".into(),
            }],
            bot_transcript: vec![
                conv::TranscriptEntry {
                    sender: conv::SenderKind::Customer as i32,
                    text: format!("I was charged twice on {CARD}"),
                    create_time: None,
                    sender_display_name: String::new(),
                },
                conv::TranscriptEntry {
                    sender: conv::SenderKind::Bot as i32,
                    text: "Let me get you a person.".into(),
                    create_time: None,
                    sender_display_name: "Ava, virtual assistant".into(),
                },
            ],
            first_message: String::new(),
        })
        .await
        .expect("create conversation")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(created.state, State::Open as i32);
    assert!(created.owner_agent_id.is_empty());
    assert!(
        !created.bot_transcript[0].text.contains(CARD),
        "the card number is masked before it is stored"
    );

    // The offer reaches the streaming agent, who accepts it.
    let offer = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(OfferUpdate::Offer(offer)) = next_offer_update(&mut offers).await
                && offer.conversation_id == created.id
                && offer.state == routing::offer::State::Pending as i32
            {
                return offer;
            }
        }
    })
    .await
    .expect("an offer within 20 s");
    assert_eq!(offer.agent_id, agent1.id);
    assert_eq!(offer.kind, routing::OfferKind::Queue as i32);
    assert_eq!(
        offer.channel_address, "visitor-42",
        "the offer says who is waiting"
    );
    assert!(!offer.queue_display_name.is_empty(), "and in which queue");
    assert_eq!(
        offer.wait_start_time, created.create_time,
        "and since when the customer waits"
    );
    let accepted = agent
        .accept_offer(routing::AcceptOfferRequest {
            request_id: rid(),
            offer_id: offer.id.clone(),
        })
        .await
        .expect("accept offer")
        .into_inner();
    assert_eq!(accepted.conversation_id, created.id);

    let mut as_agent = h.conversations("agent1");
    let active = eventually(
        "the conversation to become ACTIVE",
        Duration::from_secs(10),
        || {
            let mut client = as_agent.clone();
            let id = created.id.clone();
            async move {
                let c = client
                    .get_conversation(conv::GetConversationRequest {
                        conversation_id: id,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .conversation?;
                (c.state == State::Active as i32).then_some(c)
            }
        },
    )
    .await;
    assert_eq!(active.owner_agent_id, agent1.id);
    assert_eq!(active.owner_display_name, agent1.display_name);
    assert_eq!(
        active.pre_chat_data[0].value, "A-1001",
        "the agent sees the pre-chat data"
    );
    assert_eq!(
        active.bot_transcript.len(),
        2,
        "the agent sees the bot transcript"
    );
    let capacity = agent
        .get_agent_state(routing::GetAgentStateRequest::default())
        .await
        .expect("agent state")
        .into_inner()
        .agent_state
        .expect("agent state");
    assert_eq!(capacity.capacity_used, 1, "one web chat reserves one unit");

    // The other agent cannot see a conversation assigned to someone else.
    let hidden = h
        .conversations("agent2")
        .get_conversation(conv::GetConversationRequest {
            conversation_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("hidden from other agents");
    assert_eq!(hidden.code(), tonic::Code::NotFound);

    // Customer and agent exchange messages.
    let customer_message = h
        .bot_conversations()
        .send_message(conv::SendMessageRequest {
            request_id: rid(),
            conversation_id: created.id.clone(),
            text: format!("My card is {CARD}, can you refund?"),
            sender: conv::SenderKind::Customer as i32,
            ..Default::default()
        })
        .await
        .expect("customer message")
        .into_inner()
        .message
        .expect("message");
    assert!(!customer_message.text.contains(CARD));
    let compact: String = customer_message
        .text
        .chars()
        .filter(|c| *c != ' ')
        .collect();
    assert!(
        compact.contains("411111******1111"),
        "at most the first six and last four digits stay: {}",
        customer_message.text
    );
    let agent_message = as_agent
        .send_message(conv::SendMessageRequest {
            request_id: rid(),
            conversation_id: created.id.clone(),
            text: "Hello Casey, I can help with that.".into(),
            sender: conv::SenderKind::Unspecified as i32,
            ..Default::default()
        })
        .await
        .expect("agent message")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(agent_message.sender, conv::SenderKind::Agent as i32);
    assert_eq!(agent_message.sender_display_name, agent1.display_name);
    let messages = as_agent
        .list_messages(conv::ListMessagesRequest {
            conversation_id: created.id.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list messages")
        .into_inner()
        .messages;
    let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
    assert!(texts.contains(&customer_message.text.as_str()), "{texts:?}");
    assert!(texts.contains(&agent_message.text.as_str()), "{texts:?}");

    // A desktop that read the messages continues on the conversation stream from the last
    // one: the next event it gets is exactly the next change.
    let last_seen = messages.last().expect("messages").sequence;
    let mut live = as_agent
        .stream_conversation(conv::StreamConversationRequest {
            conversation_id: created.id.clone(),
            start: Some(conv::stream_conversation_request::Start::AfterSequence(
                last_seen,
            )),
            ..Default::default()
        })
        .await
        .expect("stream conversation")
        .into_inner();
    let mut opening = Vec::new();
    for _ in 0..2 {
        opening.push(
            tokio::time::timeout(Duration::from_secs(10), live.next())
                .await
                .expect("stream opening")
                .expect("open")
                .expect("ok")
                .update,
        );
    }
    assert!(
        matches!(
            opening.as_slice(),
            [
                Some(ConversationUpdate::Conversation(_)),
                Some(ConversationUpdate::SnapshotEnd(_))
            ]
        ),
        "the conversation, then the end of an empty replay: {opening:?}"
    );

    // The agent ends the chat, then wraps up.
    let ended = as_agent
        .end_conversation(conv::EndConversationRequest {
            request_id: rid(),
            conversation_id: created.id.clone(),
        })
        .await
        .expect("end")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(ended.state, State::WrapUp as i32);
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let item = live.next().await.expect("open").expect("ok");
            if let Some(ConversationUpdate::Event(event)) = item.update {
                return event;
            }
        }
    })
    .await
    .expect("the end arrives on the stream");
    assert_eq!(
        next.sequence,
        last_seen + 1,
        "no gap after the listed messages"
    );
    assert_eq!(next.event_type, conv::EventType::Ended as i32);
    let closed = as_agent
        .submit_wrap_up(conv::SubmitWrapUpRequest {
            request_id: rid(),
            conversation_id: created.id.clone(),
            wrap_up_reason_ids: vec![h.creds.wrap_up_reason_ids[0].clone()],
            ..Default::default()
        })
        .await
        .expect("wrap up")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(closed.state, State::Closed as i32);
    assert!(closed.close_time.is_some());

    // Capacity is released.
    eventually("capacity to be released", Duration::from_secs(10), || {
        let mut agent = agent.clone();
        async move {
            let state = agent
                .get_agent_state(routing::GetAgentStateRequest::default())
                .await
                .ok()?
                .into_inner()
                .agent_state?;
            (state.capacity_used == 0).then_some(())
        }
    })
    .await;

    // The created-and-closed report over the whole flow counts it, even when the flow
    // spans midnight: one TOTAL row from an hour before its creation to an hour after it
    // closed.
    let range_start = created.create_time.expect("create time").seconds - 3_600;
    let range_end = closed.close_time.expect("close time").seconds + 3_600;
    let flow_range = TimeRange {
        start_time: Some(prost_types::Timestamp {
            seconds: range_start,
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: range_end,
            nanos: 0,
        }),
    };
    let reports = h.reports("supervisor");
    let row = eventually(
        "the report to count the conversation",
        Duration::from_secs(15),
        || {
            let mut reports = reports.clone();
            async move {
                let rows = reports
                    .get_created_closed_report(rep::GetCreatedClosedReportRequest {
                        filter: Some(rep::ReportFilter {
                            time_range: Some(flow_range),
                            time_zone: "UTC".into(),
                            ..Default::default()
                        }),
                        granularity: rep::Granularity::Total as i32,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .rows;
                rows.into_iter().find(|r| r.created == 1 && r.closed == 1)
            }
        },
    )
    .await;
    assert_eq!(row.created, 1);
    assert_eq!(row.closed, 1);
    assert_eq!(
        row.period.and_then(|p| p.start_time),
        Some(prost_types::Timestamp {
            seconds: range_start,
            nanos: 0
        }),
        "a TOTAL row's period starts at the range's start"
    );

    // Routing's side of the same flow, from routing-svc's log: the queue offered the
    // conversation once and agent1 accepted it, within the default 60 s service level.
    let queue_id = h.creds.queue_id.clone();
    let metrics = eventually(
        "the queue metrics to count the offer",
        Duration::from_secs(15),
        || {
            let mut reports = reports.clone();
            let queue_id = queue_id.clone();
            async move {
                let rows = reports
                    .get_queue_metrics_report(rep::GetQueueMetricsReportRequest {
                        filter: Some(rep::ReportFilter {
                            time_range: Some(flow_range),
                            time_zone: "UTC".into(),
                            queue_ids: vec![queue_id],
                            ..Default::default()
                        }),
                        granularity: rep::Granularity::Total as i32,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .rows;
                rows.into_iter().find(|r| r.accepted == 1)
            }
        },
    )
    .await;
    assert_eq!(metrics.queue_id, h.creds.queue_id);
    assert_eq!(
        (metrics.offered, metrics.rona, metrics.abandoned),
        (1, 0, 0)
    );
    assert_eq!(metrics.answered_within_threshold, 1);
    assert_eq!(metrics.service_level, 1.0);

    // The disposition agent1 gave when wrapping up, in the queue.
    let reason_id = h.creds.wrap_up_reason_ids[0].clone();
    let mut reports = reports.clone();
    let dispositions = reports
        .get_dispositions_report(rep::GetDispositionsReportRequest {
            filter: Some(rep::ReportFilter {
                time_range: Some(flow_range),
                time_zone: "UTC".into(),
                queue_ids: vec![h.creds.queue_id.clone()],
                ..Default::default()
            }),
            granularity: rep::Granularity::Total as i32,
            ..Default::default()
        })
        .await
        .expect("dispositions report")
        .into_inner()
        .rows;
    assert_eq!(
        dispositions
            .iter()
            .map(|r| (
                r.agent_id.as_str(),
                r.wrap_up_reason_id.as_str(),
                r.segments
            ))
            .collect::<Vec<_>>(),
        vec![(agent1.id.as_str(), reason_id.as_str(), 1)]
    );

    // The same disposition through the filters the directory and the program stand for:
    // agent1's team and the demo program keep it; a team without agent1 and another
    // program's queues do not.
    let admin = h.bearer("admin");
    let with_agent1 = create_team(h, admin.clone(), "Flow team").await;
    let without = create_team(h, admin.clone(), "Empty team").await;
    set_teams(h, admin, &agent1.id, &[&with_agent1.id]).await;
    let dispositions_in = |team_ids: Vec<String>, program_ids: Vec<String>| {
        let mut reports = reports.clone();
        async move {
            reports
                .get_dispositions_report(rep::GetDispositionsReportRequest {
                    filter: Some(rep::ReportFilter {
                        time_range: Some(flow_range),
                        time_zone: "UTC".into(),
                        team_ids,
                        program_ids,
                        ..Default::default()
                    }),
                    granularity: rep::Granularity::Total as i32,
                    ..Default::default()
                })
                .await
                .expect("dispositions report")
                .into_inner()
                .rows
                .len()
        }
    };
    let program = h.creds.program_id.clone();
    assert_eq!(
        dispositions_in(vec![with_agent1.id.clone()], vec![program.clone()]).await,
        1
    );
    assert_eq!(dispositions_in(vec![without.id.clone()], vec![]).await, 0);
    assert_eq!(
        dispositions_in(vec![], vec![uuid::Uuid::new_v4().to_string()]).await,
        0
    );

    // agent1's activity from routing-svc's log: signed in since it went Available (the
    // presence it still holds counts up to now), with capacity used while it held the
    // conversation.
    let agent_id = agent1.id.clone();
    let activity = eventually(
        "agent activity to count agent1's time and capacity",
        Duration::from_secs(15),
        || {
            let mut reports = reports.clone();
            let agent_id = agent_id.clone();
            async move {
                let rows = reports
                    .get_agent_activity_report(rep::GetAgentActivityReportRequest {
                        filter: Some(rep::ReportFilter {
                            time_range: Some(flow_range),
                            time_zone: "UTC".into(),
                            agent_ids: vec![agent_id],
                            ..Default::default()
                        }),
                        granularity: rep::Granularity::Total as i32,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .rows;
                rows.into_iter().find(|r| r.occupancy > 0.0)
            }
        },
    )
    .await;
    let micros = |d: Option<prost_types::Duration>| {
        let d = d.expect("a duration");
        d.seconds * 1_000_000 + i64::from(d.nanos) / 1_000
    };
    assert_eq!(activity.agent_id, agent1.id);
    let signed_in = micros(activity.signed_in);
    assert!(signed_in > 0, "{activity:?}");
    assert_eq!(
        signed_in,
        [
            activity.available,
            activity.busy,
            activity.away,
            activity.do_not_disturb,
            activity.rona
        ]
        .into_iter()
        .map(micros)
        .sum::<i64>()
    );
    assert!(activity.occupancy <= 1.0, "{activity:?}");
    assert_eq!(
        (
            activity.rona_count,
            activity.capacity_overrides,
            activity.presence_overrides
        ),
        (0, 0, 0)
    );

    // The per-conversation table as CSV, streamed through the gateway: the flow's
    // conversation, closed by agent1 in one segment.
    let (csv, total) = export_csv(
        &reports,
        rep::ReportKind::Conversations,
        rep::ReportFilter {
            time_range: Some(flow_range),
            time_zone: "UTC".into(),
            agent_ids: vec![agent1.id.clone()],
            ..Default::default()
        },
    )
    .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("conversation_id,channel,"), "{csv}");
    let row = lines
        .iter()
        .find(|line| line.starts_with(&created.id))
        .unwrap_or_else(|| panic!("no row for {} in {csv}", created.id));
    let fields: Vec<&str> = row.split(',').collect();
    assert_eq!(fields[1], "WEBCHAT");
    assert_eq!(fields[6], agent1.id, "closed by agent1");
    assert_eq!(fields[12], "true", "resolved at first contact");
    assert_eq!(total as usize, lines.len() - 1);
}

/// An export's CSV text and its announced row count, checking the stream's order.
async fn export_csv<T>(
    reports: &rep::reporting_service_client::ReportingServiceClient<T>,
    kind: rep::ReportKind,
    filter: rep::ReportFilter,
) -> (String, i64)
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    use rep::export_report_response::Update;
    let mut stream = reports
        .clone()
        .export_report(rep::ExportReportRequest {
            kind: kind as i32,
            filter: Some(filter),
            ..Default::default()
        })
        .await
        .expect("export")
        .into_inner();
    let (mut total, mut ended, mut bytes) = (None, None, Vec::new());
    while let Some(message) = stream.message().await.expect("export stream") {
        match message.update.expect("one field set") {
            Update::Start(start) => total = Some(start.total_rows),
            Update::Chunk(chunk) => {
                assert!(total.is_some(), "a chunk before start");
                bytes.extend(chunk.csv_data);
            }
            Update::Heartbeat(_) => {}
            Update::End(end) => ended = Some(end.total_rows),
        }
    }
    assert_eq!(ended, total, "end repeats the total");
    (
        String::from_utf8(bytes).expect("UTF-8"),
        total.expect("start"),
    )
}

/// The next update of an offer stream, skipping heartbeats, within ten seconds.
async fn next_offer_update(
    offers: &mut tonic::Streaming<routing::StreamOffersResponse>,
) -> Option<OfferUpdate> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let message = offers
                .next()
                .await
                .expect("offer stream stays open")
                .expect("offer stream ok");
            if !matches!(message.update, Some(OfferUpdate::Heartbeat(_))) {
                return message.update;
            }
        }
    })
    .await
    .expect("an offer stream message within 10 s")
}
