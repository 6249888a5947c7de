//! Where a conversation may be transferred: queues of its program that accept its channel,
//! then the agents of those queues, in the order the contract lists them.

use crate::domain::types::{Agent, Channel, OfferKind, Presence, Queue, channel_units};

/// Which targets a caller asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// Queues, then agents.
    All,
    /// Queues only.
    Queues,
    /// Agents only.
    Agents,
}

/// A place a conversation may be transferred to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferTarget {
    /// A queue of the program accepting the channel.
    Queue {
        /// The queue.
        queue_id: String,
        /// Its name.
        display_name: String,
        /// Conversations waiting in it.
        waiting: i32,
        /// Member agents Available.
        agents_available: i32,
    },
    /// An agent of such a queue.
    Agent {
        /// The agent.
        agent_id: String,
        /// Its name.
        display_name: String,
        /// Its presence now.
        presence: Presence,
        /// Units free now.
        free_units: i32,
        /// Units the conversation would take from it.
        required_units: i32,
        /// The queue through which it would receive the conversation.
        queue_id: String,
    },
}

impl TransferTarget {
    /// The position in the list: queues before agents, each by name then id. Also the
    /// page token's key.
    pub fn sort_key(&self) -> Vec<String> {
        match self {
            TransferTarget::Queue {
                queue_id,
                display_name,
                ..
            } => vec!["0".into(), display_name.clone(), queue_id.clone()],
            TransferTarget::Agent {
                agent_id,
                display_name,
                ..
            } => vec!["1".into(), display_name.clone(), agent_id.clone()],
        }
    }
}

/// One queue of the conversation's program with its live numbers and members.
#[derive(Clone, Debug)]
pub struct CandidateQueue {
    /// The queue.
    pub queue: Queue,
    /// Conversations waiting in it.
    pub waiting: i32,
    /// Member agents Available.
    pub agents_available: i32,
    /// Its member agents.
    pub members: Vec<Agent>,
}

/// Whether `name` contains `filter` without regard to case (an empty filter matches all).
fn name_matches(name: &str, filter: &str) -> bool {
    filter.is_empty() || name.to_lowercase().contains(&filter.to_lowercase())
}

/// The targets for a conversation on `channel` among `queues` (its program's), never the
/// caller, never an agent whose capacity profile excludes the channel, filtered by name
/// and kind, in list order. An agent of several queues receives it through the first by
/// priority (highest first), then name.
pub fn transfer_targets(
    queues: &[CandidateQueue],
    channel: Channel,
    caller_id: &str,
    name_filter: &str,
    kind: TargetKind,
) -> Vec<TransferTarget> {
    let mut accepting: Vec<&CandidateQueue> =
        queues.iter().filter(|q| q.queue.accepts(channel)).collect();
    accepting.sort_by(|a, b| {
        b.queue
            .priority
            .cmp(&a.queue.priority)
            .then_with(|| a.queue.display_name.cmp(&b.queue.display_name))
            .then_with(|| a.queue.id.cmp(&b.queue.id))
    });
    let mut targets = Vec::new();
    if kind != TargetKind::Agents {
        targets.extend(
            accepting
                .iter()
                .filter(|q| name_matches(&q.queue.display_name, name_filter))
                .map(|q| TransferTarget::Queue {
                    queue_id: q.queue.id.clone(),
                    display_name: q.queue.display_name.clone(),
                    waiting: q.waiting,
                    agents_available: q.agents_available,
                }),
        );
    }
    if kind != TargetKind::Queues {
        let mut seen = std::collections::HashSet::new();
        for candidate in &accepting {
            for agent in &candidate.members {
                if agent.agent_id == caller_id
                    || agent.excludes(channel)
                    || !name_matches(&agent.display_name, name_filter)
                    || !seen.insert(agent.agent_id.clone())
                {
                    continue;
                }
                targets.push(TransferTarget::Agent {
                    agent_id: agent.agent_id.clone(),
                    display_name: agent.display_name.clone(),
                    presence: agent.shown_presence(),
                    free_units: agent.capacity().free(),
                    required_units: channel_units(&agent.channel_costs, channel),
                    queue_id: candidate.queue.id.clone(),
                });
            }
        }
    }
    targets.sort_by_key(TransferTarget::sort_key);
    targets
}

/// Why a directed offer of `kind` to `agent_id` cannot be made while the conversation's
/// `pending` offers (kind, agent) wait for an answer, if it cannot: a queue offer or a
/// transfer excludes every other offer, and an agent is invited once at a time. Several
/// agents may be invited at once.
pub fn directed_offer_conflict(
    kind: OfferKind,
    agent_id: &str,
    pending: &[(OfferKind, &str)],
) -> Option<String> {
    for &(other, other_agent) in pending {
        let why = match (kind, other) {
            (_, OfferKind::Queue) => "it is being offered from its queue",
            (_, OfferKind::Transfer) => "a transfer of it is waiting for an answer",
            (OfferKind::Transfer | OfferKind::Queue, _) => {
                "an invitation is waiting for an answer; cancel it first"
            }
            _ if other_agent == agent_id => "that agent's invitation is waiting for an answer",
            _ => continue,
        };
        return Some(why.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::{AssignmentMethod, ChannelCost};

    fn queue(id: &str, name: &str, priority: i32, channels: Vec<Channel>) -> Queue {
        Queue {
            display_name: name.into(),
            accepted_channels: channels,
            assignment_method: AssignmentMethod::RoundRobin,
            offer_timeout_us: 1,
            priority,
            ..Queue::sample(id)
        }
    }

    fn agent(id: &str, name: &str) -> Agent {
        Agent {
            tenant_id: "t".into(),
            agent_id: id.into(),
            display_name: name.into(),
            capacity_profile_id: "cp".into(),
            capacity_total: 4,
            channel_costs: vec![ChannelCost {
                channel: Channel::Webchat.as_i32(),
                units: 2,
            }],
            excluded_channels: vec![],
            queue_ids: vec![],
            skills: vec![],
            presence: Presence::Available,
            presence_reason: String::new(),
            presence_change_time: 0,
            idle_since: 0,
            login_time: 0,
            capacity_used: 1,
            pending_units: 0,
        }
    }

    fn candidate(queue: Queue, members: Vec<Agent>) -> CandidateQueue {
        CandidateQueue {
            queue,
            waiting: 3,
            agents_available: 1,
            members,
        }
    }

    #[test]
    fn queues_then_agents_by_name_without_the_caller_or_excluded_agents() {
        let no_chat = Agent {
            excluded_channels: vec![Channel::Webchat],
            ..agent("x", "Xena")
        };
        let queues = vec![
            candidate(
                queue("q1", "Sales", 0, vec![Channel::Webchat]),
                vec![agent("b", "bob"), agent("me", "Me"), no_chat],
            ),
            candidate(
                queue("q2", "Billing", 5, vec![Channel::Webchat]),
                vec![agent("b", "bob"), agent("a", "Ada")],
            ),
            candidate(
                queue("q3", "Voice", 9, vec![Channel::Voice]),
                vec![agent("v", "Vic")],
            ),
        ];
        let targets = transfer_targets(&queues, Channel::Webchat, "me", "", TargetKind::All);
        let keys: Vec<Vec<String>> = targets.iter().map(TransferTarget::sort_key).collect();
        assert_eq!(
            keys,
            vec![
                vec!["0".to_owned(), "Billing".into(), "q2".into()],
                vec!["0".to_owned(), "Sales".into(), "q1".into()],
                vec!["1".to_owned(), "Ada".into(), "a".into()],
                vec!["1".to_owned(), "bob".into(), "b".into()],
            ]
        );
        // Bob is in both; Billing has the higher priority.
        assert_eq!(
            targets[3],
            TransferTarget::Agent {
                agent_id: "b".into(),
                display_name: "bob".into(),
                presence: Presence::Available,
                free_units: 3,
                required_units: 2,
                queue_id: "q2".into(),
            }
        );
        let filtered = transfer_targets(&queues, Channel::Webchat, "me", "BO", TargetKind::All);
        assert_eq!(filtered.len(), 1);
        let only_queues = transfer_targets(&queues, Channel::Webchat, "me", "", TargetKind::Queues);
        assert_eq!(only_queues.len(), 2);
        let only_agents = transfer_targets(&queues, Channel::Webchat, "me", "", TargetKind::Agents);
        assert_eq!(only_agents.len(), 2);
    }

    #[test]
    fn invitations_to_several_agents_may_wait_together() {
        let pending = [(OfferKind::Consult, "a"), (OfferKind::Conference, "b")];
        assert_eq!(
            directed_offer_conflict(OfferKind::Conference, "c", &pending),
            None
        );
        assert!(directed_offer_conflict(OfferKind::Consult, "a", &pending).is_some());
        assert!(directed_offer_conflict(OfferKind::Transfer, "c", &pending).is_some());
    }

    #[test]
    fn a_transfer_or_queue_offer_excludes_every_other_offer() {
        for blocking in [OfferKind::Transfer, OfferKind::Queue] {
            let pending = [(blocking, "a")];
            for kind in [
                OfferKind::Transfer,
                OfferKind::Consult,
                OfferKind::Conference,
            ] {
                assert!(directed_offer_conflict(kind, "b", &pending).is_some());
            }
        }
        assert_eq!(directed_offer_conflict(OfferKind::Transfer, "b", &[]), None);
    }
}
