//! Card numbers never reach the logs: the whole suite runs in this process with every
//! Switchboard module logging at TRACE into a buffer, a conversation carries card numbers
//! in every field a user can fill, and the buffer must not hold one in full.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::routing::v1 as routing;
use switchboard_tests::{Backend, Harness, eventually, rid};

const CARD: &str = "4111111111111111";

/// Everything logged in this process.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter(
                "switchboard=trace,switchboard_server_kit=trace,gateway=trace,\
                 routing_svc=trace,conversation_svc=trace,reporting_svc=trace,info",
            )
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .init();
        log
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The card number written the ways people write it.
fn variants() -> Vec<String> {
    vec![
        CARD.to_owned(),
        "4111 1111 1111 1111".to_owned(),
        "4111-1111-1111-1111".to_owned(),
        "4111.1111.1111.1111".to_owned(),
    ]
}

// nextest runs each case in its own process, so each installs its own capture.
switchboard_tests::on_each_backend!(card_numbers_never_reach_the_logs);
async fn card_numbers_never_reach_the_logs(backend: &Backend) {
    let log = captured();
    let h = Harness::start(backend).await.expect("suite starts");
    let mut agent = h.agent("agent1");
    agent
        .set_presence(routing::SetPresenceRequest {
            request_id: rid(),
            presence: routing::Presence::Available as i32,
            reason: format!("back, card {}", variants()[3]),
            ..Default::default()
        })
        .await
        .expect("presence");
    let created = h
        .bot_conversations()
        .create_conversation(conv::CreateConversationRequest {
            request_id: rid(),
            channel: Channel::Webchat as i32,
            queue_id: h.creds.queue_id.clone(),
            channel_address: format!("visitor {}", variants()[2]),
            contact: Some(conv::Contact {
                display_name: Some(format!("Casey {}", variants()[1])),
                ..Default::default()
            }),
            pre_chat_data: vec![conv::PreChatField {
                name: "card".into(),
                label: "Card".into(),
                value: CARD.into(),
            }],
            bot_transcript: vec![conv::TranscriptEntry {
                sender: conv::SenderKind::Customer as i32,
                text: format!("my card is {}", variants()[1]),
                ..Default::default()
            }],
            first_message: format!("charged twice on {CARD}"),
        })
        .await
        .expect("create")
        .into_inner()
        .conversation
        .expect("conversation");
    h.bot_conversations()
        .send_message(conv::SendMessageRequest {
            request_id: rid(),
            conversation_id: created.id.clone(),
            text: format!("again: {}", variants()[2]),
            sender: conv::SenderKind::Customer as i32,
            ..Default::default()
        })
        .await
        .expect("customer message");
    // The conversation reaches the agent and is handled, so routing, the outbox and the
    // reporting consumer all see it.
    let offer = eventually("an offer", Duration::from_secs(20), || {
        let mut queues = h.queues("supervisor");
        let id = created.id.clone();
        async move {
            queues
                .list_offers(routing::ListOffersRequest {
                    conversation_id: id,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .offers
                .into_iter()
                .next()
        }
    })
    .await;
    agent
        .reject_offer(routing::RejectOfferRequest {
            request_id: rid(),
            offer_id: offer.id.clone(),
            reason: format!("card {CARD} on a call"),
        })
        .await
        .expect("reject");

    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        text.contains("conversation created"),
        "the capture works: the service's own lines are there"
    );
    for variant in variants() {
        assert!(
            !text.contains(&variant),
            "a full card number ({variant}) reached the logs:\n{}",
            text.lines()
                .filter(|l| l.contains(&variant))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    h.stop().await.expect("every service stops cleanly");
}
