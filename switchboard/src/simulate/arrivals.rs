//! Customers arriving: a Poisson process at the chosen mean rate, each a CreateConversation
//! by the demo bot's API key on a channel of the mix, with contact details, pre-chat data
//! and a first message as a channel connector would send them.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use tokio::sync::{Semaphore, watch};

use super::{CALL_TIMEOUT, QueueInfo, World};
use crate::seed::ApiKey;

/// Most creates outstanding at once; later ones wait (their wait counts in the latency).
const MAX_IN_FLIGHT: usize = 512;

/// How often each messaging channel comes in, before the queues' accepted channels filter
/// the mix: chat first, then the messaging apps, email least.
const CHANNEL_WEIGHTS: &[(Channel, f64)] = &[
    (Channel::Webchat, 4.0),
    (Channel::Whatsapp, 3.0),
    (Channel::Sms, 2.0),
    (Channel::Messenger, 1.0),
    (Channel::Email, 1.0),
];

const NAMES: &[&str] = &[
    "Casey Morgan",
    "Riley Park",
    "Jamie Okafor",
    "Avery Santos",
    "Quinn Novak",
    "Drew Haddad",
    "Taylor Brooks",
    "Robin Ito",
];

const FIRST_MESSAGES: &[&str] = &[
    "I was charged twice for my order.",
    "My package has not arrived yet.",
    "How do I change my delivery address?",
    "I would like to return an item.",
    "I can't sign in to my account.",
    "Is the blue one back in stock?",
];

/// The channels customers arrive on and the share of each: the weights above, restricted
/// to the channels some queue accepts.
pub fn channel_mix(queues: &[QueueInfo]) -> Vec<(Channel, f64)> {
    let accepted: Vec<(Channel, f64)> = CHANNEL_WEIGHTS
        .iter()
        .copied()
        .filter(|(c, _)| queues.iter().any(|q| q.channels.contains(c)))
        .collect();
    let total: f64 = accepted.iter().map(|(_, w)| w).sum();
    accepted.into_iter().map(|(c, w)| (c, w / total)).collect()
}

/// Creates conversations until `duration` has passed or `interrupt` turns true, then
/// waits for the creates still in flight.
pub async fn run(
    world: Arc<World>,
    rate: f64,
    duration: Duration,
    seed: u64,
    mut interrupt: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mix = channel_mix(&world.queues);
    let client = conv::conversation_service_client::ConversationServiceClient::with_interceptor(
        world.channel.clone(),
        ApiKey::new(&world.bot_api_key).expect("an API key is ASCII"),
    );
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut creates = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    let mut due = start;
    let mut n = 0u64;
    loop {
        // Exponential gaps: independent customers arriving at a mean rate.
        let gap = -(1.0 - rng.random::<f64>()).ln() / rate;
        due += Duration::from_secs_f64(gap);
        if due - start >= duration {
            // The next customer would come after the end: the run still lasts `duration`.
            tokio::select! {
                () = tokio::time::sleep_until(start + duration) => {}
                () = super::raised(&mut interrupt) => {}
            }
            break;
        }
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = super::raised(&mut interrupt) => break,
        }
        n += 1;
        let request = customer(&mut rng, &mix, &world.queues, n);
        let (world, slots, mut client) = (world.clone(), slots.clone(), client.clone());
        let due = due.into_std();
        creates.spawn(async move {
            let _slot = slots.acquire_owned().await;
            match tokio::time::timeout(CALL_TIMEOUT, client.create_conversation(request)).await {
                Ok(Ok(response)) => match response.into_inner().conversation {
                    Some(conversation) => world.stats.created(&conversation.id, due),
                    None => world
                        .stats
                        .error("CreateConversation", "answer without a conversation"),
                },
                Ok(Err(status)) => world.stats.error("CreateConversation", status),
                Err(_) => world.stats.error("CreateConversation", "no answer in time"),
            }
        });
        // Reap finished creates as we go, so a long run does not hold them all.
        while creates.try_join_next().is_some() {}
    }
    while creates.join_next().await.is_some() {}
}

/// One customer's CreateConversation: a channel of the mix, a queue that accepts it, and
/// what a connector for that channel knows about the customer.
fn customer(
    rng: &mut StdRng,
    mix: &[(Channel, f64)],
    queues: &[QueueInfo],
    n: u64,
) -> conv::CreateConversationRequest {
    let mut pick = rng.random::<f64>();
    let channel = mix
        .iter()
        .find(|(_, share)| {
            pick -= share;
            pick < 0.0
        })
        .or(mix.last())
        .map(|(c, _)| *c)
        .unwrap_or(Channel::Webchat);
    let queue = queues
        .iter()
        .filter(|q| q.channels.contains(&channel))
        .collect::<Vec<_>>()
        .choose(rng)
        .map(|q| q.id.clone())
        .unwrap_or_default();
    let name = NAMES.choose(rng).copied().unwrap_or("Casey Morgan");
    let unique = uuid::Uuid::from_u128(rng.random()).simple().to_string();
    let (channel_address, display_name) = match channel {
        // A phone number: SMS carries no name.
        Channel::Sms => (format!("+1555{:07}", rng.random_range(0..10_000_000)), None),
        Channel::Whatsapp => (
            format!("+4475{:08}", rng.random_range(0..100_000_000)),
            Some(name),
        ),
        Channel::Email => (
            format!("customer-{}@example.invalid", &unique[..12]),
            Some(name),
        ),
        Channel::Messenger => (format!("psid-{}", &unique[..16]), Some(name)),
        _ => (format!("visitor-{}", &unique[..12]), Some(name)),
    };
    let pre_chat_data = if channel == Channel::Webchat {
        vec![conv::PreChatField {
            name: "order_number".into(),
            label: "Order number".into(),
            value: format!("A-{}", 1000 + n),
        }]
    } else {
        Vec::new()
    };
    conv::CreateConversationRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        channel: channel as i32,
        queue_id: queue,
        contact: Some(conv::Contact {
            display_name: display_name.map(str::to_owned),
            ..Default::default()
        }),
        pre_chat_data,
        first_message: FIRST_MESSAGES
            .choose(rng)
            .copied()
            .unwrap_or("Hello?")
            .to_owned(),
        channel_address,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(channels: &[Channel]) -> QueueInfo {
        QueueInfo {
            id: "q".into(),
            name: "q".into(),
            channels: channels.to_vec(),
            wrap_up_reason_ids: vec!["r".into()],
            offer_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_mix_holds_only_accepted_channels_and_sums_to_one() {
        let mix = channel_mix(&[queue(&[Channel::Webchat, Channel::Sms])]);
        assert_eq!(
            mix.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            [Channel::Webchat, Channel::Sms]
        );
        assert!((mix.iter().map(|(_, s)| s).sum::<f64>() - 1.0).abs() < 1e-9);
        let only_chat = channel_mix(&[queue(&[Channel::Webchat])]);
        assert_eq!(only_chat, vec![(Channel::Webchat, 1.0)]);
    }

    #[test]
    fn a_customer_goes_to_a_queue_that_accepts_the_channel() {
        let queues = [
            QueueInfo {
                id: "chat".into(),
                ..queue(&[Channel::Webchat])
            },
            QueueInfo {
                id: "text".into(),
                ..queue(&[Channel::Sms, Channel::Whatsapp])
            },
        ];
        let mix = channel_mix(&queues);
        let mut rng = StdRng::seed_from_u64(7);
        for n in 0..200 {
            let request = customer(&mut rng, &mix, &queues, n);
            let channel = Channel::try_from(request.channel).unwrap();
            let expected = if channel == Channel::Webchat {
                "chat"
            } else {
                "text"
            };
            assert_eq!(request.queue_id, expected, "{channel:?}");
            assert!(!request.channel_address.is_empty());
        }
    }
}
