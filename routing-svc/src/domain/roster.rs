//! A queue's members as one walk of the matcher sees them: ranked once per channel, and kept
//! in step as the walk makes offers, so that routing a conversation costs about what the
//! candidates a decision lists cost rather than a pass over every member.
//!
//! [`decide`] looks at every member for every conversation: at 15,000 members that was
//! milliseconds per offer, most of the cost of routing. Within a walk only the agents it
//! offers something change, so the roster ranks each channel's eligible members once, moves
//! an agent when an offer changes it, and for each conversation only sets aside what is
//! particular to it: the agents that already had it. Its decisions are [`decide`]'s, to the
//! record (a test compares them on random queues). A conversation held back from agents
//! who logged in after it entered the queue is decided by [`decide`] itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::domain::matching::{
    CandidateView, Decision, LISTED_CANDIDATES, check_eligible, decide, waiting_before_login,
};
use crate::domain::types::{
    Agent, AssignmentMethod, Candidate, Channel, Omitted, PassReason, Queue,
};

/// The members of one queue during one walk.
#[derive(Debug)]
pub struct Roster {
    /// As read at the start of the walk, sorted by agent id.
    members: Arc<Vec<Agent>>,
    /// Members offered something in this walk, as the store now holds them (by index).
    changed: HashMap<usize, Agent>,
    /// Per member: conversations of the queue held plus pending offers in it.
    open: Vec<i32>,
    /// The agent the queue's rotation last chose.
    cursor: String,
    /// The latest login of any member: a conversation that entered after it is held back
    /// from nobody.
    latest_login: i64,
    /// Per channel (in [`Channel::ALL`] order), built on first use.
    pools: Vec<Option<Pool>>,
    /// Members some conversation could be offered to now, once counted.
    offerable: Option<usize>,
}

/// One channel's members, split by what they are regardless of the conversation.
#[derive(Debug)]
struct Pool {
    /// Per member: the units an offer would cost, or why they are passed over.
    verdicts: Vec<Result<i32, PassReason>>,
    /// Eligible members, best first (round robin: by agent id, rotated when read).
    ranked: Vec<usize>,
    /// The others, by agent id.
    passed: Vec<usize>,
    /// `passed` counted by reason.
    passed_by_reason: BTreeMap<PassReason, i32>,
}

impl Roster {
    /// The roster of `members` (sorted by agent id), with each one's open conversations
    /// in the queue and the rotation's last choice.
    pub fn new(members: Arc<Vec<Agent>>, open: &HashMap<String, i32>, cursor: String) -> Roster {
        debug_assert!(members.windows(2).all(|w| w[0].agent_id < w[1].agent_id));
        let open = if open.is_empty() {
            vec![0; members.len()]
        } else {
            members
                .iter()
                .map(|m| open.get(&m.agent_id).copied().unwrap_or(0))
                .collect()
        };
        let latest_login = members.iter().map(|m| m.login_time).max().unwrap_or(0);
        Roster {
            members,
            changed: HashMap::new(),
            open,
            cursor,
            latest_login,
            pools: Channel::ALL.iter().map(|_| None).collect(),
            offerable: None,
        }
    }

    /// Member `index` as it is now.
    fn agent(&self, index: usize) -> &Agent {
        self.changed.get(&index).unwrap_or(&self.members[index])
    }

    fn index_of(&self, agent_id: &str) -> Option<usize> {
        self.members
            .binary_search_by(|m| m.agent_id.as_str().cmp(agent_id))
            .ok()
    }

    /// The members as candidates for a conversation that entered the queue at `entered`
    /// (`None`: for any conversation, one entered now), for [`decide`].
    pub fn views(
        &self,
        queue: &Queue,
        excluded: &HashSet<String>,
        entered: Option<i64>,
    ) -> Vec<CandidateView<'_>> {
        (0..self.members.len())
            .map(|index| {
                let agent = self.agent(index);
                CandidateView {
                    agent,
                    open_in_queue: self.open[index],
                    already_offered: excluded.contains(&agent.agent_id),
                    waiting_before_login: entered
                        .is_some_and(|entered| waiting_before_login(queue, agent, entered)),
                }
            })
            .collect()
    }

    /// The rotation's last choice.
    pub fn cursor(&self) -> &str {
        &self.cursor
    }

    /// What member `index` is for `channel` whatever the conversation.
    fn verdict(&self, queue: &Queue, channel: Channel, index: usize) -> Result<i32, PassReason> {
        check_eligible(
            queue,
            channel,
            &CandidateView {
                agent: self.agent(index),
                open_in_queue: self.open[index],
                already_offered: false,
                waiting_before_login: false,
            },
        )
    }

    /// Orders eligible members as [`decide`] ranks them (round robin before rotation).
    fn rank_key(&self, method: AssignmentMethod, index: usize) -> (i64, i64, usize) {
        let agent = self.agent(index);
        match method {
            AssignmentMethod::MostAvailableCapacity => {
                (-i64::from(agent.capacity().free()), agent.idle_since, index)
            }
            AssignmentMethod::LongestIdle => (agent.idle_since, 0, index),
            AssignmentMethod::RoundRobin | AssignmentMethod::ManualPick => (0, 0, index),
        }
    }

    fn pool(&mut self, queue: &Queue, channel: Channel) -> &Pool {
        let at = channel_index(channel);
        if self.pools[at].is_none() {
            let verdicts: Vec<_> = (0..self.members.len())
                .map(|index| self.verdict(queue, channel, index))
                .collect();
            let mut ranked: Vec<usize> = (0..verdicts.len())
                .filter(|&i| verdicts[i].is_ok())
                .collect();
            ranked.sort_by_cached_key(|&i| self.rank_key(queue.assignment_method, i));
            let mut passed_by_reason = BTreeMap::new();
            let passed = (0..verdicts.len())
                .filter(|&i| match verdicts[i] {
                    Ok(_) => false,
                    Err(reason) => {
                        *passed_by_reason.entry(reason).or_insert(0) += 1;
                        true
                    }
                })
                .collect();
            self.pools[at] = Some(Pool {
                verdicts,
                ranked,
                passed,
                passed_by_reason,
            });
        }
        self.pools[at].as_ref().expect("built above")
    }

    /// Routes one conversation on `channel` that entered the queue at `entered` (`None`: as
    /// if now), which the agents in `excluded` already had: the same decision as
    /// [`decide`] over every member.
    pub fn decide(
        &mut self,
        queue: &Queue,
        channel: Channel,
        excluded: &HashSet<String>,
        entered: Option<i64>,
    ) -> Decision {
        let held_back = entered
            .is_some_and(|entered| !queue.offer_waiting_on_login && entered < self.latest_login);
        if held_back {
            return decide(
                queue,
                channel,
                &self.views(queue, excluded, entered),
                &self.cursor,
            );
        }
        self.pool(queue, channel);
        let pool = self.pools[channel_index(channel)]
            .as_ref()
            .expect("built above");
        self.decide_in(pool, queue, excluded)
    }

    fn decide_in(&self, pool: &Pool, queue: &Queue, excluded: &HashSet<String>) -> Decision {
        // The excluded members, and the reason each is passed over for: one that no
        // conversation could go to keeps that reason, as `check_eligible` checks it first.
        let mut set_aside: Vec<(usize, PassReason)> = excluded
            .iter()
            .filter_map(|id| self.index_of(id))
            .map(|index| {
                let reason = match pool.verdicts[index] {
                    Err(
                        reason @ (PassReason::ChannelExcluded
                        | PassReason::Rona
                        | PassReason::NotAvailable),
                    ) => reason,
                    _ => PassReason::AlreadyOffered,
                };
                (index, reason)
            })
            .collect();
        set_aside.sort_unstable();
        let aside = |index: usize| {
            set_aside
                .binary_search_by_key(&index, |&(i, _)| i)
                .ok()
                .map(|at| set_aside[at].1)
        };
        let eligible_aside = set_aside
            .iter()
            .filter(|&&(i, _)| pool.verdicts[i].is_ok())
            .count();
        let eligible_count = pool.ranked.len() - eligible_aside;

        let manual = queue.assignment_method == AssignmentMethod::ManualPick;
        let start = if queue.assignment_method == AssignmentMethod::RoundRobin {
            pool.ranked
                .partition_point(|&i| self.members[i].agent_id.as_str() <= self.cursor.as_str())
        } else {
            0
        };
        // Round robin starts after the agent it chose last and wraps around.
        let (wrapped, next) = pool.ranked.split_at(start);
        let eligible = next
            .iter()
            .chain(wrapped)
            .copied()
            .filter(|&i| aside(i).is_none());

        let mut chosen = None;
        let mut candidates = Vec::with_capacity(LISTED_CANDIDATES.min(self.members.len()));
        for (rank, index) in eligible.take(LISTED_CANDIDATES).enumerate() {
            let agent = self.agent(index);
            let reason = if rank == 0 && !manual {
                let units = pool.verdicts[index].unwrap_or_default();
                chosen = Some((agent.agent_id.clone(), units));
                PassReason::Chosen
            } else {
                PassReason::RankedLower
            };
            candidates.push(candidate(agent, reason));
        }
        // Everyone not listed is counted: first the eligible ones ranked lower...
        let mut counts = BTreeMap::<PassReason, i32>::new();
        let unlisted_eligible = eligible_count - candidates.len();
        if unlisted_eligible > 0 {
            counts.insert(PassReason::RankedLower, count(unlisted_eligible));
        }
        // ...then the passed-over ones, listed by agent id while there is room: the
        // members passed over whatever the conversation and those set aside for it.
        for (reason, n) in &pool.passed_by_reason {
            *counts.entry(*reason).or_insert(0) += n;
        }
        for &(index, reason) in &set_aside {
            if let Err(was) = pool.verdicts[index] {
                *counts.entry(was).or_insert(0) -= 1;
            }
            *counts.entry(reason).or_insert(0) += 1;
        }
        if candidates.len() < LISTED_CANDIDATES {
            let mut passed = pool.passed.iter().copied().peekable();
            let mut aside_eligible = set_aside
                .iter()
                .filter(|&&(i, _)| pool.verdicts[i].is_ok())
                .map(|&(i, _)| i)
                .peekable();
            while candidates.len() < LISTED_CANDIDATES {
                let index = match (passed.peek(), aside_eligible.peek()) {
                    (Some(&p), Some(&a)) if a < p => aside_eligible.next(),
                    (Some(_), _) => passed.next(),
                    (None, Some(_)) => aside_eligible.next(),
                    (None, None) => None,
                };
                let Some(index) = index else { break };
                let reason = match (aside(index), pool.verdicts[index]) {
                    (Some(reason), _) | (None, Err(reason)) => reason,
                    (None, Ok(_)) => unreachable!("only passed-over members are merged"),
                };
                *counts.entry(reason).or_insert(0) -= 1;
                candidates.push(candidate(self.agent(index), reason));
            }
        }
        let omitted = counts
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(reason, count)| Omitted {
                reason: reason.as_i32(),
                count,
            })
            .collect();
        Decision {
            chosen,
            candidates,
            omitted,
        }
    }

    /// Whether some member could be offered a conversation of some channel now.
    pub fn can_offer(&mut self, queue: &Queue) -> bool {
        if queue.assignment_method == AssignmentMethod::ManualPick {
            return false;
        }
        let offerable = match self.offerable {
            Some(offerable) => offerable,
            None => {
                let offerable = (0..self.members.len())
                    .filter(|&index| self.offerable_member(queue, index))
                    .count();
                self.offerable = Some(offerable);
                offerable
            }
        };
        offerable > 0
    }

    fn offerable_member(&self, queue: &Queue, index: usize) -> bool {
        Channel::ALL
            .iter()
            .any(|&channel| self.verdict(queue, channel, index).is_ok())
    }

    /// Mirrors what the store did on an offer to `agent_id` of `units` at `now`.
    pub fn note_offer(&mut self, queue: &Queue, agent_id: &str, units: i32, now: i64) {
        agent_id.clone_into(&mut self.cursor);
        let Some(index) = self.index_of(agent_id) else {
            return;
        };
        let was_offerable = self.offerable.map(|_| self.offerable_member(queue, index));
        let mut agent = self.agent(index).clone();
        agent.pending_units += units;
        agent.idle_since = now;
        self.changed.insert(index, agent);
        self.open[index] += 1;
        if let (Some(was), Some(offerable)) = (was_offerable, self.offerable.as_mut()) {
            let is = Channel::ALL.iter().any(|&channel| {
                check_eligible(
                    queue,
                    channel,
                    &CandidateView {
                        agent: self.changed.get(&index).expect("inserted above"),
                        open_in_queue: self.open[index],
                        already_offered: false,
                        waiting_before_login: false,
                    },
                )
                .is_ok()
            });
            *offerable = *offerable + usize::from(is) - usize::from(was);
        }
        for at in 0..self.pools.len() {
            let Some(mut pool) = self.pools[at].take() else {
                continue;
            };
            let channel = Channel::ALL[at];
            match pool.verdicts[index] {
                Ok(_) => pool.ranked.retain(|&i| i != index),
                Err(reason) => {
                    pool.passed.retain(|&i| i != index);
                    *pool.passed_by_reason.entry(reason).or_insert(0) -= 1;
                }
            }
            let verdict = self.verdict(queue, channel, index);
            pool.verdicts[index] = verdict;
            match verdict {
                Ok(_) => {
                    let key = self.rank_key(queue.assignment_method, index);
                    let at = pool
                        .ranked
                        .partition_point(|&i| self.rank_key(queue.assignment_method, i) < key);
                    pool.ranked.insert(at, index);
                }
                Err(reason) => {
                    let at = pool.passed.partition_point(|&i| i < index);
                    pool.passed.insert(at, index);
                    *pool.passed_by_reason.entry(reason).or_insert(0) += 1;
                }
            }
            self.pools[at] = Some(pool);
        }
    }
}

fn channel_index(channel: Channel) -> usize {
    Channel::ALL
        .iter()
        .position(|&c| c == channel)
        .expect("every channel is in ALL")
}

fn candidate(agent: &Agent, reason: PassReason) -> Candidate {
    Candidate {
        agent_id: agent.agent_id.clone(),
        reason: reason.as_i32(),
        free_units: agent.capacity().free(),
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::domain::types::{ChannelCost, Presence, Skill, SkillRequirement};

    fn random_agent(rng: &mut StdRng, n: usize) -> Agent {
        let total = rng.random_range(0..5);
        let used = rng.random_range(0..=total);
        Agent {
            tenant_id: "t".into(),
            agent_id: format!("agent-{n:04}"),
            display_name: String::new(),
            capacity_profile_id: "cp".into(),
            capacity_total: total,
            channel_costs: if rng.random_bool(0.3) {
                vec![ChannelCost {
                    channel: Channel::Voice.as_i32(),
                    units: 2,
                }]
            } else {
                vec![]
            },
            excluded_channels: if rng.random_bool(0.2) {
                vec![Channel::Sms]
            } else {
                vec![]
            },
            queue_ids: vec![],
            skills: if rng.random_bool(0.7) {
                vec![Skill {
                    name: "Billing".into(),
                    level: rng.random_range(1..6),
                }]
            } else {
                vec![]
            },
            presence: *[
                Presence::Available,
                Presence::Available,
                Presence::Available,
                Presence::Away,
                Presence::Rona,
                Presence::Offline,
            ]
            .get(rng.random_range(0..6))
            .expect("in range"),
            presence_reason: String::new(),
            presence_change_time: 0,
            // Few distinct values, so that ties fall to the agent id.
            idle_since: rng.random_range(0..4),
            login_time: rng.random_range(0..100),
            capacity_used: used,
            pending_units: rng.random_range(0..=total - used),
        }
    }

    fn random_queue(rng: &mut StdRng) -> Queue {
        let method = AssignmentMethod::ALL[rng.random_range(0..AssignmentMethod::ALL.len())];
        Queue {
            assignment_method: method,
            max_open_per_agent: rng.random_range(0..3),
            offer_waiting_on_login: rng.random_bool(0.7),
            required_skills: if rng.random_bool(0.4) {
                vec![SkillRequirement {
                    name: "billing".into(),
                    min_level: rng.random_range(1..5),
                }]
            } else {
                vec![]
            },
            ..Queue::sample("q")
        }
    }

    /// On random queues and members, a walk of random conversations (with agents that
    /// already had them) decides exactly as `decide` over every member would, offers
    /// included.
    #[test]
    fn decides_as_decide_over_every_member() {
        for seed in 0..300 {
            let mut rng = StdRng::seed_from_u64(seed);
            let queue = random_queue(&mut rng);
            let size = *[0, 1, 3, 20, 40, 90]
                .get(rng.random_range(0..6))
                .expect("in range");
            let members: Vec<Agent> = (0..size).map(|n| random_agent(&mut rng, n)).collect();
            let mut open = HashMap::new();
            for member in &members {
                if rng.random_bool(0.3) {
                    open.insert(member.agent_id.clone(), rng.random_range(0..3));
                }
            }
            let cursor = format!("agent-{:04}", rng.random_range(0..size.max(1)));
            let mut roster = Roster::new(Arc::new(members.clone()), &open, cursor.clone());
            // The model: every member as `decide` sees it, changed as the walk offers.
            let mut model = members;
            let mut model_open = open;
            let mut model_cursor = cursor;
            for step in 0..40 {
                let channel = Channel::ALL[rng.random_range(0..Channel::ALL.len())];
                let excluded: HashSet<String> = (0..rng.random_range(0..4))
                    .map(|_| format!("agent-{:04}", rng.random_range(0..size.max(1) + 2)))
                    .collect();
                let entered = rng.random_bool(0.8).then(|| rng.random_range(0..120));
                let views: Vec<CandidateView<'_>> = model
                    .iter()
                    .map(|agent| CandidateView {
                        agent,
                        open_in_queue: model_open.get(&agent.agent_id).copied().unwrap_or(0),
                        already_offered: excluded.contains(&agent.agent_id),
                        waiting_before_login: entered
                            .is_some_and(|e| waiting_before_login(&queue, agent, e)),
                    })
                    .collect();
                let expected = decide(&queue, channel, &views, &model_cursor);
                let got = roster.decide(&queue, channel, &excluded, entered);
                assert_eq!(got, expected, "seed {seed}, step {step}, {queue:?}");
                let can_offer = queue.assignment_method != AssignmentMethod::ManualPick
                    && model.iter().any(|agent| {
                        let view = CandidateView {
                            agent,
                            open_in_queue: model_open.get(&agent.agent_id).copied().unwrap_or(0),
                            already_offered: false,
                            waiting_before_login: false,
                        };
                        Channel::ALL
                            .iter()
                            .any(|&c| check_eligible(&queue, c, &view).is_ok())
                    });
                assert_eq!(
                    roster.can_offer(&queue),
                    can_offer,
                    "seed {seed}, step {step}"
                );
                if let Some((agent_id, units)) = expected.chosen {
                    let now = 1_000 + step;
                    roster.note_offer(&queue, &agent_id, units, now);
                    let agent = model
                        .iter_mut()
                        .find(|a| a.agent_id == agent_id)
                        .expect("a member");
                    agent.pending_units += units;
                    agent.idle_since = now;
                    *model_open.entry(agent_id.clone()).or_default() += 1;
                    model_cursor = agent_id;
                }
            }
        }
    }
}
