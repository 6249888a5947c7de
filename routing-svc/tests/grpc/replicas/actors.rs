//! The actors of the run: customers arriving and leaving, agents answering their offers,
//! changing presence and taking work by hand, pickers racing for manual-pick work, the
//! replica killer, and a watcher of what must hold at every moment.

use super::*;

fn enqueue_request(
    tenant: &str,
    conversation_id: &str,
    queue_id: &str,
) -> ipb::EnqueueConversationRequest {
    ipb::EnqueueConversationRequest {
        tenant_id: tenant.to_owned(),
        conversation_id: conversation_id.to_owned(),
        queue_id: queue_id.to_owned(),
        channel: Channel::Webchat as i32,
        customer_display_name: "Grace".into(),
        enqueue_key: "create".into(),
        wait_start_time: None,
        channel_address: "visitor".into(),
    }
}

/// Enqueues `conversation_id` in `queue_id` through any replica; false when refused.
async fn enqueue_anywhere(
    world: &World,
    rng: &mut StdRng,
    conversation_id: &str,
    queue_id: &str,
) -> bool {
    let request = enqueue_request(&world.tenant, conversation_id, queue_id);
    let answer = world
        .call(rng, "EnqueueConversation", true, |replica| {
            let mut client = replica.internal();
            let request = request.clone();
            async move { client.enqueue_conversation(request).await }
        })
        .await;
    match answer.result {
        Ok(response) => {
            let item = response.item.unwrap_or_default();
            if item.queue_id != queue_id || item.conversation_id != conversation_id {
                world.violation(format!(
                    "enqueue of {conversation_id} in {queue_id} answered {item:?}"
                ));
            }
            world
                .seen
                .lock()
                .unwrap()
                .enqueued
                .push((conversation_id.to_owned(), queue_id.to_owned()));
            true
        }
        Err(status) => {
            world.violation(format!(
                "enqueue of {conversation_id} in {queue_id} refused: {status:?}"
            ));
            false
        }
    }
}

/// Releases the units `agent_id` holds for `conversation_id`, as conversation-svc does when
/// the conversation ends.
async fn release_anywhere(world: &World, rng: &mut StdRng, conversation_id: &str, agent_id: &str) {
    world
        .seen
        .lock()
        .unwrap()
        .release_asked
        .insert(conversation_id.to_owned());
    let request = ipb::ReleaseCapacityRequest {
        tenant_id: world.tenant.clone(),
        conversation_id: conversation_id.to_owned(),
        agent_id: agent_id.to_owned(),
    };
    let answer = world
        .call(rng, "ReleaseCapacity", true, |replica| {
            let mut client = replica.internal();
            let request = request.clone();
            async move { client.release_capacity(request).await }
        })
        .await;
    match answer.result {
        // A retry finds nothing to free when the try cut off had freed it.
        Ok(response) if response.released_units == 1 || answer.retried => {
            world
                .seen
                .lock()
                .unwrap()
                .released
                .insert(conversation_id.to_owned());
        }
        other => world.violation(format!(
            "releasing conversation {conversation_id} held by agent {agent_id}: {other:?}"
        )),
    }
}

/// Conversations arrive in the routed queues.
pub(super) async fn enqueuer(world: Arc<World>, mut rng: StdRng) {
    let queues = world.queues.clone();
    for _ in 0..CONVERSATIONS {
        if !pause(&world, millis(&mut rng, 15..50)).await {
            return;
        }
        let queue = match rng.random_range(0..100) {
            0..55 => &queues.front,
            55..80 => &queues.billing,
            _ => &queues.overflow,
        };
        enqueue_anywhere(&world, &mut rng, &new_id(), queue).await;
    }
}

/// Customers leave: conversation-svc cancels their waiting (a no-op once taken).
pub(super) async fn canceller(world: Arc<World>, mut rng: StdRng) {
    while pause(&world, millis(&mut rng, 100..300)).await {
        let conversation_id = {
            let seen = world.seen.lock().unwrap();
            // Mostly recent ones, which are likelier to be waiting; not those pickers race
            // for, whose races are judged on their own.
            let routed: Vec<&(String, String)> = seen
                .enqueued
                .iter()
                .filter(|(_, queue)| *queue != world.queues.manual)
                .collect();
            let recent = routed.len().saturating_sub(20);
            match routed[recent..].choose(&mut rng) {
                Some((conversation_id, _)) => conversation_id.clone(),
                None => continue,
            }
        };
        world
            .seen
            .lock()
            .unwrap()
            .cancel_asked
            .insert(conversation_id.clone());
        let request = ipb::CancelWaitingRequest {
            tenant_id: world.tenant.clone(),
            conversation_id: conversation_id.clone(),
        };
        let answer = world
            .call(&mut rng, "CancelWaiting", true, |replica| {
                let mut client = replica.internal();
                let request = request.clone();
                async move { client.cancel_waiting(request).await }
            })
            .await;
        match answer.result {
            Ok(response) if response.was_waiting => {
                world.count("CancelWaiting: was waiting");
                world.seen.lock().unwrap().cancelled.insert(conversation_id);
            }
            Ok(_) => world.count("CancelWaiting: no longer waiting"),
            Err(status) => world.violation(format!(
                "cancelling conversation {conversation_id}: {status:?}"
            )),
        }
    }
}

/// Mid-run (once some of the conversations are enqueued), kills a replica and starts another
/// on the same database.
pub(super) async fn killer(
    world: Arc<World>,
    mut rng: StdRng,
    conversation_url: String,
    database_url: String,
) {
    let at = rng.random_range(CONVERSATIONS * 3 / 10..CONVERSATIONS * 6 / 10);
    let routed = |world: &World| {
        let seen = world.seen.lock().unwrap();
        seen.enqueued
            .iter()
            .filter(|(_, queue)| *queue != world.queues.manual)
            .count()
    };
    // On a machine too slow for that many in time, at the latest well before the load ends.
    let latest = Instant::now() + LOAD_LIMIT.mul_f64(0.4);
    while routed(&world) < at && Instant::now() < latest {
        if !pause(&world, Duration::from_millis(10)).await {
            return;
        }
    }
    let victim = world.pick(&mut rng);
    victim.kill();
    let killed_at = Instant::now();
    let replacement = Replica::start(2, &conversation_url, &database_url, &world.tenant).await;
    for agent in &world.agents {
        replacement.h.register_agent(&agent.id, &agent.name);
    }
    world.replicas.lock().unwrap().push(replacement);
    world.seen.lock().unwrap().kills.push(format!(
        "killed replica {} after {at} conversations, {:?} into the run; replica 2 served {:?} \
         later",
        victim.number,
        killed_at - world.began,
        killed_at.elapsed()
    ));
}

/// Checks while the load runs what must hold at every moment: no agent over capacity, no
/// offer pending long past its deadline.
pub(super) async fn watcher(world: Arc<World>) {
    let mut reported = HashSet::new();
    while pause(&world, Duration::from_millis(200)).await {
        let mut conn = world.store.conn().await.unwrap();
        let over: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT agent_id, capacity_used, pending_units, capacity_total FROM agents \
             WHERE capacity_used + pending_units > capacity_total",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        for (agent, used, pending, total) in over {
            world.violation(format!(
                "agent {agent} holds {used} units and is promised {pending}, over its {total}"
            ));
        }
        let now = switchboard_server_kit::db::now_micros();
        let overdue: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, expire_time FROM offers WHERE state = 1 AND expire_time < $1",
        )
        .bind(now - EXPIRY_GRACE_US)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        for (offer, expire_time) in overdue {
            if reported.insert(offer.clone()) {
                world.violation(format!(
                    "offer {offer} still pending {} ms past its deadline",
                    (now - expire_time) / 1_000
                ));
            }
        }
    }
}

/// Something an agent will do at a given time.
enum Todo {
    Answer {
        offer: Box<pb::Offer>,
        accept: bool,
        request_id: String,
    },
    Release {
        conversation_id: String,
    },
    Presence {
        presence: pb::Presence,
        request_id: String,
    },
}

fn presence(presence: pb::Presence) -> Todo {
    Todo::Presence {
        presence,
        request_id: new_id(),
    }
}

/// One routed agent: follows its offers on one replica (another once that one dies) and
/// answers them, or lets them time out; ends its conversations after a while; goes Away
/// now and then, comes back from RONA, and sometimes takes a waiting conversation by hand.
pub(super) async fn agent(world: Arc<World>, index: usize, mut rng: StdRng) {
    let me = world.agents[index].clone();
    let mut stream: Option<(Arc<Replica>, Streaming<pb::StreamOffersResponse>)> = None;
    let mut answered = HashSet::new();
    let mut todo: Vec<(Instant, Todo)> = vec![(Instant::now(), presence(pb::Presence::Available))];
    let mut back_from_rona = false;
    let mut next_whim = Instant::now() + millis(&mut rng, 500..2500);
    loop {
        if world.stop.is_cancelled() {
            break;
        }
        if stream.is_none() {
            let replica = world.pick(&mut rng);
            let opened = tokio::time::timeout(
                CALL_TIMEOUT,
                replica
                    .agent(&me.id)
                    .stream_offers(pb::StreamOffersRequest {}),
            )
            .await;
            match opened {
                Ok(Ok(offers)) => stream = Some((replica, offers.into_inner())),
                other => {
                    world.count(format!(
                        "StreamOffers: not opened on replica {}: {:?}",
                        replica.number,
                        other.map(|r| r.map(|_| ()).map_err(|s| s.code()))
                    ));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            continue;
        }
        let (replica, offers) = stream.as_mut().unwrap();
        let wake = todo
            .iter()
            .map(|(at, _)| *at)
            .chain([next_whim, Instant::now() + Duration::from_millis(250)])
            .min()
            .unwrap();
        let message = tokio::select! {
            () = world.stop.cancelled() => break,
            message = offers.message() => Some(message),
            () = tokio::time::sleep_until(wake) => None,
        };
        match message {
            Some(Ok(Some(message))) => match message.update {
                Some(pb::stream_offers_response::Update::Offer(offer)) => {
                    if offer.agent_id != me.id {
                        world.violation(format!(
                            "agent {} was shown offer {} of agent {}",
                            me.id, offer.id, offer.agent_id
                        ));
                    }
                    if state_of(&offer) == pb::offer::State::Pending
                        && answered.insert(offer.id.clone())
                    {
                        let timeout = world.queues.offer_timeouts[&offer.queue_id];
                        // Some answers come too late: they race the deadline.
                        let limit = u64::try_from(timeout.as_millis()).unwrap() * 115 / 100;
                        let roll = rng.random_range(0..100);
                        if roll < 75 {
                            todo.push((
                                Instant::now() + millis(&mut rng, 0..limit),
                                Todo::Answer {
                                    offer: Box::new(offer),
                                    accept: roll < 50,
                                    request_id: new_id(),
                                },
                            ));
                        } else {
                            world.count("offers left to time out");
                        }
                    }
                }
                Some(pb::stream_offers_response::Update::AgentState(state))
                    if state.presence == pb::Presence::Rona as i32 && !back_from_rona =>
                {
                    back_from_rona = true;
                    todo.push((
                        Instant::now() + millis(&mut rng, 100..600),
                        presence(pb::Presence::Available),
                    ));
                }
                _ => {}
            },
            Some(other) => {
                world.count(format!(
                    "StreamOffers: ended on replica {}{}: {:?}",
                    replica.number,
                    if replica.alive() { "" } else { " (killed)" },
                    other.map(|_| ()).map_err(|s| s.code())
                ));
                stream = None;
            }
            None => {}
        }

        let now = Instant::now();
        if now >= next_whim {
            next_whim = now + millis(&mut rng, 500..2500);
            match rng.random_range(0..100) {
                0..25 => {
                    todo.push((now, presence(pb::Presence::Away)));
                    todo.push((
                        now + millis(&mut rng, 200..900),
                        presence(pb::Presence::Available),
                    ));
                }
                25..40 => {
                    if let Some(conversation_id) = claim_one(&world, &mut rng, &me).await {
                        todo.push((
                            Instant::now() + millis(&mut rng, 300..1500),
                            Todo::Release { conversation_id },
                        ));
                    }
                }
                _ => {}
            }
        }
        todo.sort_by_key(|(at, _)| *at);
        let due = todo.partition_point(|(at, _)| *at <= Instant::now());
        for (_, action) in todo.drain(..due).collect::<Vec<_>>() {
            match action {
                Todo::Answer {
                    offer,
                    accept: true,
                    request_id,
                } => {
                    if let Some(conversation_id) =
                        accept(&world, &mut rng, &me, &offer, &request_id).await
                    {
                        todo.push((
                            Instant::now() + millis(&mut rng, 300..1500),
                            Todo::Release { conversation_id },
                        ));
                    }
                }
                Todo::Answer {
                    offer,
                    accept: false,
                    request_id,
                } => reject(&world, &mut rng, &me, &offer, &request_id).await,
                Todo::Release { conversation_id } => {
                    release_anywhere(&world, &mut rng, &conversation_id, &me.id).await;
                }
                Todo::Presence {
                    presence,
                    request_id,
                } => {
                    if presence == pb::Presence::Available {
                        back_from_rona = false;
                    }
                    set_presence_anywhere(&world, &mut rng, &me, presence, &request_id).await;
                }
            }
        }
    }
}

/// Accepts `offer`; the conversation when it is now the agent's.
async fn accept(
    world: &World,
    rng: &mut StdRng,
    me: &AgentPlan,
    offer: &pb::Offer,
    request_id: &str,
) -> Option<String> {
    let request = pb::AcceptOfferRequest {
        request_id: request_id.to_owned(),
        offer_id: offer.id.clone(),
    };
    let answer = world
        .call(rng, "AcceptOffer", true, |replica| {
            let mut client = replica.agent(&me.id);
            let request = request.clone();
            async move { client.accept_offer(request).await }
        })
        .await;
    match answer.result {
        Ok(response) => {
            let accepted = response.offer.unwrap_or_default();
            if response.conversation_id != offer.conversation_id
                || accepted.id != offer.id
                || state_of(&accepted) != pb::offer::State::Accepted
            {
                world.violation(format!(
                    "accepting offer {} of {} answered {accepted:?}",
                    offer.id, offer.conversation_id
                ));
            }
            world.count("AcceptOffer: OK");
            took(world, &offer.conversation_id, &me.id, &offer.id);
            Some(offer.conversation_id.clone())
        }
        // Expired, timed out, withdrawn (Away, cancelled) meanwhile.
        Err(status) if status.code() == Code::FailedPrecondition => {
            world.count("AcceptOffer: FAILED_PRECONDITION");
            None
        }
        // Not found would be someone else's offer; no capacity, units promised and lost.
        Err(status) => {
            world.violation(format!(
                "agent {} accepting offer {}: {status:?}",
                me.id, offer.id
            ));
            None
        }
    }
}

async fn reject(
    world: &World,
    rng: &mut StdRng,
    me: &AgentPlan,
    offer: &pb::Offer,
    request_id: &str,
) {
    let request = pb::RejectOfferRequest {
        request_id: request_id.to_owned(),
        offer_id: offer.id.clone(),
        reason: "busy".into(),
    };
    let answer = world
        .call(rng, "RejectOffer", true, |replica| {
            let mut client = replica.agent(&me.id);
            let request = request.clone();
            async move { client.reject_offer(request).await }
        })
        .await;
    match answer.result {
        Ok(_) => world.count("RejectOffer: OK"),
        Err(status) if status.code() == Code::FailedPrecondition => {
            world.count("RejectOffer: FAILED_PRECONDITION");
        }
        Err(status) => world.violation(format!(
            "agent {} rejecting offer {}: {status:?}",
            me.id, offer.id
        )),
    }
}

async fn set_presence_anywhere(
    world: &World,
    rng: &mut StdRng,
    me: &AgentPlan,
    presence: pb::Presence,
    request_id: &str,
) {
    let request = pb::SetPresenceRequest {
        request_id: request_id.to_owned(),
        agent_id: String::new(),
        presence: presence as i32,
        reason: String::new(),
    };
    let answer = world
        .call(rng, "SetPresence", true, |replica| {
            let mut client = replica.agent(&me.id);
            let request = request.clone();
            async move { client.set_presence(request).await }
        })
        .await;
    match answer.result {
        Ok(_) => world.count(format!("SetPresence {presence:?}: OK")),
        Err(status) => world.violation(format!("agent {} setting {presence:?}: {status:?}", me.id)),
    }
}

/// Records that `agent_id` was told it took `conversation_id` through `offer_id`.
fn took(world: &World, conversation_id: &str, agent_id: &str, offer_id: &str) {
    let mut seen = world.seen.lock().unwrap();
    if let Some((other, earlier)) = seen.taken.insert(
        conversation_id.to_owned(),
        (agent_id.to_owned(), offer_id.to_owned()),
    ) && earlier != offer_id
    {
        seen.violations.push(format!(
            "conversation {conversation_id} taken twice: by agent {other} (offer {earlier}) \
             and by agent {agent_id} (offer {offer_id})"
        ));
    }
}

async fn claim(
    world: &World,
    rng: &mut StdRng,
    agent_id: &str,
    conversation_id: &str,
    request_id: &str,
) -> Answer<pb::ClaimWaitingWorkResponse> {
    let request = pb::ClaimWaitingWorkRequest {
        request_id: request_id.to_owned(),
        conversation_id: conversation_id.to_owned(),
    };
    world
        .call(rng, "ClaimWaitingWork", false, |replica| {
            let mut client = replica.agent(agent_id);
            let request = request.clone();
            async move { client.claim_waiting_work(request).await }
        })
        .await
}

/// A routed agent takes one conversation of its queues' waiting work by hand, racing the
/// matcher, overflow, cancellation and other agents; the conversation when it got it.
async fn claim_one(world: &World, rng: &mut StdRng, me: &AgentPlan) -> Option<String> {
    let listed = world
        .call(rng, "ListWaitingWork", true, |replica| {
            let mut client = replica.agent(&me.id);
            async move {
                client
                    .list_waiting_work(pb::ListWaitingWorkRequest {
                        page_size: 20,
                        ..Default::default()
                    })
                    .await
            }
        })
        .await;
    let items = match listed.result {
        Ok(response) => response.items,
        Err(status) => {
            world.violation(format!("agent {} listing waiting work: {status:?}", me.id));
            return None;
        }
    };
    let Some(item) = items.choose(rng) else {
        world.count("ListWaitingWork: nothing waiting");
        return None;
    };
    if !me.queues.contains(&item.queue_id) {
        world.violation(format!(
            "agent {} was listed conversation {} of queue {}, not one of its queues",
            me.id, item.conversation_id, item.queue_id
        ));
    }
    let answer = claim(world, rng, &me.id, &item.conversation_id, &new_id()).await;
    match answer.result {
        Ok(response) => {
            let offer = response.offer.unwrap_or_default();
            if offer.agent_id != me.id
                || offer.conversation_id != item.conversation_id
                || state_of(&offer) != pb::offer::State::Accepted
            {
                world.violation(format!(
                    "agent {} claiming {} was answered {offer:?}",
                    me.id, item.conversation_id
                ));
            }
            world.count("ClaimWaitingWork by a routed agent: OK");
            took(world, &item.conversation_id, &me.id, &offer.id);
            Some(item.conversation_id.clone())
        }
        // Offered meanwhile; taken, cancelled or moved meanwhile; lost a race at the same
        // moment; no room left.
        Err(status)
            if matches!(
                status.code(),
                Code::FailedPrecondition | Code::NotFound | Code::Aborted | Code::ResourceExhausted
            ) =>
        {
            world.count(format!(
                "ClaimWaitingWork by a routed agent: {:?}",
                status.code()
            ));
            None
        }
        Err(status) => {
            world.violation(format!(
                "agent {} claiming {}: {status:?}",
                me.id, item.conversation_id
            ));
            None
        }
    }
}

/// Pairs of pickers race for each conversation of the manual-pick queue, each claim through
/// a replica of its own choosing. Every other race is pinned: the test holds the waiting row's lock until both
/// claims wait on it, so that they meet at the same moment and the loser must be told
/// ABORTED; in the others the loser may come after the winner and find nothing waiting.
pub(super) async fn manual_pick_races(world: Arc<World>, mut rng: StdRng) {
    let pickers: Vec<AgentPlan> = world.agents.iter().filter(|a| a.picker).cloned().collect();
    for round in 0..RACES {
        if !pause(&world, millis(&mut rng, 20..120)).await {
            return;
        }
        let conversation_id = new_id();
        if !enqueue_anywhere(&world, &mut rng, &conversation_id, &world.queues.manual).await {
            continue;
        }
        let pair: Vec<&AgentPlan> = pickers.choose_multiple(&mut rng, 2).collect();
        let pinned = round % 2 == 0;
        let claims = [0, 1].map(|side| {
            let world = world.clone();
            let agent_id = pair[side].id.clone();
            let conversation_id = conversation_id.clone();
            let mut rng = StdRng::seed_from_u64(rng.random());
            async move {
                let request_id = new_id();
                claim(&world, &mut rng, &agent_id, &conversation_id, &request_id).await
            }
        });
        let (answers, met) = if pinned {
            pinned_race(&world, &conversation_id, claims).await
        } else {
            let [first, second] = claims;
            let (first, second) = tokio::join!(first, second);
            ([first, second], false)
        };
        let winner = judge_race(&world, &conversation_id, &pair, &answers, pinned, met);
        if let Some(winner) = winner {
            // The winner's conversation ends soon, so pickers never run out of room.
            tokio::time::sleep(millis(&mut rng, 0..200)).await;
            release_anywhere(&world, &mut rng, &conversation_id, &winner).await;
        }
    }
}

/// Runs both claims while the test holds the lock of the conversation's waiting row, and
/// lets go once both wait on it; the answers, and whether both did wait on it.
async fn pinned_race<F>(
    world: &World,
    conversation_id: &str,
    claims: [F; 2],
) -> ([Answer<pb::ClaimWaitingWorkResponse>; 2], bool)
where
    F: Future<Output = Answer<pb::ClaimWaitingWorkResponse>> + Send + 'static,
{
    let mut hold = world.store.begin().await.unwrap();
    let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(hold.conn())
        .await
        .unwrap();
    sqlx::query("SELECT conversation_id FROM waiting WHERE conversation_id = $1 FOR UPDATE")
        .bind(conversation_id)
        .fetch_optional(hold.conn())
        .await
        .unwrap();
    let [first, second] = claims;
    let tasks = [tokio::spawn(first), tokio::spawn(second)];
    let until = Instant::now() + Duration::from_secs(5);
    let met = loop {
        // The first claim waits for the test's lock, the second for the first claim.
        let waiting: i64 = sqlx::query_scalar(
            "WITH RECURSIVE blocked (pid) AS ( \
               SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) \
               UNION SELECT a.pid FROM pg_stat_activity a \
               JOIN blocked b ON b.pid = ANY(pg_blocking_pids(a.pid))) \
             SELECT COUNT(*) FROM blocked",
        )
        .bind(holder)
        .fetch_one(&mut *world.store.conn().await.unwrap())
        .await
        .unwrap();
        if waiting >= 2 {
            break true;
        }
        if tasks.iter().any(JoinHandle::is_finished) || Instant::now() >= until {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    hold.rollback().await.unwrap();
    let [first, second] = tasks;
    let (first, second) = tokio::join!(first, second);
    ([first.unwrap(), second.unwrap()], met)
}

/// Checks the answers of two claims of one conversation; the winner, if any.
fn judge_race(
    world: &World,
    conversation_id: &str,
    pair: &[&AgentPlan],
    answers: &[Answer<pb::ClaimWaitingWorkResponse>; 2],
    pinned: bool,
    met: bool,
) -> Option<String> {
    let race = if pinned { "pinned" } else { "free" };
    let won: Vec<usize> = (0..2).filter(|i| answers[*i].result.is_ok()).collect();
    let retried = answers.iter().any(|answer| answer.retried);
    match won.as_slice() {
        [winner] => {
            let winner = *winner;
            let offer = answers[winner]
                .result
                .as_ref()
                .unwrap()
                .offer
                .clone()
                .unwrap_or_default();
            if offer.agent_id != pair[winner].id || offer.conversation_id != conversation_id {
                world.violation(format!(
                    "claiming {conversation_id} for agent {} was answered {offer:?}",
                    pair[winner].id
                ));
            }
            took(world, conversation_id, &pair[winner].id, &offer.id);
            let status = answers[1 - winner].result.as_ref().unwrap_err();
            let code = status.code();
            // Claims that met at the row both read it waiting: the loser lost the race.
            // Otherwise the loser may have come after the winner and found it gone.
            let expected = code == Code::Aborted || (code == Code::NotFound && (!met || retried));
            if expected {
                world.count(format!(
                    "manual-pick race ({race}{}): loser {code:?}",
                    if met { ", met" } else { "" }
                ));
            } else {
                world.violation(format!(
                    "{race} manual-pick race for {conversation_id} (claims met: {met}, \
                     retried: {retried}): the loser, agent {}, was answered {status:?}, \
                     not ABORTED",
                    pair[1 - winner].id
                ));
            }
            Some(pair[winner].id.clone())
        }
        [] if retried => {
            // A claim cut off by the kill may have won and its retry been told it was gone.
            world.count(format!("manual-pick race ({race}): undecided after a kill"));
            None
        }
        _ => {
            world.violation(format!(
                "{race} manual-pick race for {conversation_id}: agents {} and {} answered \
                 {:?} and {:?}",
                pair[0].id,
                pair[1].id,
                answers[0]
                    .result
                    .as_ref()
                    .map(|r| r.offer.as_ref().map(|o| o.id.clone())),
                answers[1]
                    .result
                    .as_ref()
                    .map(|r| r.offer.as_ref().map(|o| o.id.clone())),
            ));
            None
        }
    }
}
