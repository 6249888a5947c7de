//! Who may be offered a waiting conversation, and who is chosen: eligibility rules and
//! the queue's assignment method.

use std::cmp::Ordering;

use crate::domain::types::{
    Agent, AssignmentMethod, Candidate, Channel, Omitted, PassReason, Queue, SkillRequirement,
    channel_units,
};

/// One member agent of the queue as the matcher sees it for one conversation.
#[derive(Clone, Debug)]
pub struct CandidateView<'a> {
    /// The agent's profile and live state.
    pub agent: &'a Agent,
    /// Conversations of this queue the agent holds or has pending offers for.
    pub open_in_queue: i32,
    /// Whether the agent already rejected or missed this conversation (since it last
    /// entered the queue), or has it pending.
    pub already_offered: bool,
    /// Whether the conversation is held back from the agent because it was waiting before
    /// the agent logged in ([`waiting_before_login`]).
    pub waiting_before_login: bool,
}

/// Whether a conversation that entered `queue` at `entered_time` is held back from `agent`:
/// the queue does not offer waiting conversations on login and it entered before the
/// agent's login. Only offers are held back; the agent may still claim it.
pub fn waiting_before_login(queue: &Queue, agent: &Agent, entered_time: i64) -> bool {
    !queue.offer_waiting_on_login && entered_time < agent.login_time
}

/// The outcome of routing one waiting conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The chosen agent and the units the conversation costs them.
    pub chosen: Option<(String, i32)>,
    /// The members considered, chosen first, then by rank, then the passed-over ones by
    /// agent id; at most [`LISTED_CANDIDATES`].
    pub candidates: Vec<Candidate>,
    /// The members beyond those, counted by reason (in reason order).
    pub omitted: Vec<Omitted>,
}

/// Most candidates a decision lists. A record is written for every offer: listing every
/// member of a 2,000-agent queue made each one ~150 kB and the cost of an offer grow with
/// the queue; the best-ranked and a sample of the passed-over explain a decision, and
/// counts tell the rest.
pub const LISTED_CANDIDATES: usize = 25;

/// Whether `agent` has every skill in `required` at its minimum level or above (names
/// compared without case).
pub fn has_skills(agent: &Agent, required: &[SkillRequirement]) -> bool {
    missing_skill(agent, required).is_none()
}

/// The first requirement in `required` that `agent` does not meet, if any.
pub fn missing_skill<'a>(
    agent: &Agent,
    required: &'a [SkillRequirement],
) -> Option<&'a SkillRequirement> {
    required.iter().find(|needed| {
        !agent.skills.iter().any(|skill| {
            skill.name.eq_ignore_ascii_case(&needed.name) && skill.level >= needed.min_level
        })
    })
}

/// Checks one member agent for an offer on `channel` from `queue`; the units the
/// conversation would cost them, or why they are passed over.
pub fn check_eligible(
    queue: &Queue,
    channel: Channel,
    view: &CandidateView<'_>,
) -> Result<i32, PassReason> {
    let agent = view.agent;
    // Checked first: no change of presence or load would ever let the agent take it.
    if agent.excludes(channel) {
        return Err(PassReason::ChannelExcluded);
    }
    if agent.presence == crate::domain::types::Presence::Rona {
        return Err(PassReason::Rona);
    }
    if !agent.presence.receives_offers() {
        return Err(PassReason::NotAvailable);
    }
    if view.already_offered {
        return Err(PassReason::AlreadyOffered);
    }
    if view.waiting_before_login {
        return Err(PassReason::WaitingBeforeLogin);
    }
    if !has_skills(agent, &queue.required_skills) {
        return Err(PassReason::MissingSkill);
    }
    let units = channel_units(&agent.channel_costs, channel);
    if !agent.capacity().can_offer(units) {
        return Err(PassReason::NoCapacity);
    }
    if queue.max_open_per_agent > 0 && view.open_in_queue >= queue.max_open_per_agent {
        return Err(PassReason::MaxOpenReached);
    }
    Ok(units)
}

/// Orders eligible agents best first under `method`. `rr_cursor` is the agent id the
/// queue's rotation last chose (round robin picks the next id after it, wrapping).
fn rank(method: AssignmentMethod, eligible: &mut [(&Agent, i32)], rr_cursor: &str) {
    let by_idle = |a: &Agent, b: &Agent| {
        a.idle_since
            .cmp(&b.idle_since)
            .then_with(|| a.agent_id.cmp(&b.agent_id))
    };
    match method {
        AssignmentMethod::MostAvailableCapacity => eligible.sort_by(|(a, _), (b, _)| {
            b.capacity()
                .free()
                .cmp(&a.capacity().free())
                .then_with(|| by_idle(a, b))
        }),
        AssignmentMethod::LongestIdle => eligible.sort_by(|(a, _), (b, _)| by_idle(a, b)),
        AssignmentMethod::RoundRobin => eligible.sort_by(|(a, _), (b, _)| {
            let after = |agent: &Agent| agent.agent_id.as_str() > rr_cursor;
            match (after(a), after(b)) {
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                _ => a.agent_id.cmp(&b.agent_id),
            }
        }),
        AssignmentMethod::ManualPick => {}
    }
}

/// Routes one conversation on `channel` waiting in `queue` among the queue's members.
/// A manual-pick queue chooses nobody.
pub fn decide(
    queue: &Queue,
    channel: Channel,
    members: &[CandidateView<'_>],
    rr_cursor: &str,
) -> Decision {
    let mut eligible = Vec::new();
    let mut passed = Vec::new();
    for view in members {
        match check_eligible(queue, channel, view) {
            Ok(units) => eligible.push((view.agent, units)),
            Err(reason) => passed.push((view.agent, reason)),
        }
    }
    rank(queue.assignment_method, &mut eligible, rr_cursor);
    let manual = queue.assignment_method == AssignmentMethod::ManualPick;
    let chosen = if manual {
        None
    } else {
        eligible
            .first()
            .map(|(agent, units)| (agent.agent_id.clone(), *units))
    };
    passed.sort_by(|(a, _), (b, _)| a.agent_id.cmp(&b.agent_id));
    // Only the listed candidates are built; a large queue's others are only counted.
    let ranked = eligible.iter().enumerate().map(|(index, (agent, _))| {
        let reason = if index == 0 && !manual {
            PassReason::Chosen
        } else {
            PassReason::RankedLower
        };
        (*agent, reason)
    });
    let mut candidates = Vec::with_capacity(LISTED_CANDIDATES.min(members.len()));
    let mut counts = std::collections::BTreeMap::<i32, i32>::new();
    for (agent, reason) in ranked.chain(passed.iter().map(|(agent, reason)| (*agent, *reason))) {
        if candidates.len() < LISTED_CANDIDATES {
            candidates.push(Candidate {
                agent_id: agent.agent_id.clone(),
                reason: reason.as_i32(),
                free_units: agent.capacity().free(),
            });
        } else {
            *counts.entry(reason.as_i32()).or_default() += 1;
        }
    }
    let omitted = counts
        .into_iter()
        .map(|(reason, count)| Omitted { reason, count })
        .collect();
    Decision {
        chosen,
        candidates,
        omitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::{ChannelCost, Presence, Skill};

    fn queue(method: AssignmentMethod) -> Queue {
        Queue {
            assignment_method: method,
            ..Queue::sample("q")
        }
    }

    fn agent(id: &str, total: i32, used: i32, idle_since: i64) -> Agent {
        Agent {
            tenant_id: "t".into(),
            agent_id: id.into(),
            display_name: id.to_uppercase(),
            capacity_profile_id: "cp".into(),
            capacity_total: total,
            channel_costs: vec![ChannelCost {
                channel: Channel::Voice.as_i32(),
                units: 3,
            }],
            queue_ids: vec!["q".into()],
            excluded_channels: vec![],
            skills: vec![],
            presence: Presence::Available,
            presence_reason: String::new(),
            presence_change_time: 0,
            idle_since,
            login_time: 0,
            capacity_used: used,
            pending_units: 0,
        }
    }

    fn view(agent: &Agent) -> CandidateView<'_> {
        CandidateView {
            agent,
            open_in_queue: 0,
            already_offered: false,
            waiting_before_login: false,
        }
    }

    fn reasons(decision: &Decision) -> Vec<(String, PassReason)> {
        decision
            .candidates
            .iter()
            .map(|c| (c.agent_id.clone(), PassReason::from_i32(c.reason).unwrap()))
            .collect()
    }

    #[test]
    fn each_rule_passes_an_agent_over_with_its_reason() {
        let q = Queue {
            required_skills: vec![SkillRequirement {
                name: "billing".into(),
                min_level: 3,
            }],
            max_open_per_agent: 2,
            ..queue(AssignmentMethod::MostAvailableCapacity)
        };
        let skilled = |mut a: Agent| {
            a.skills.push(Skill {
                name: "Billing".into(),
                level: 3,
            });
            a
        };
        let ok = skilled(agent("a", 5, 0, 0));
        let away = Agent {
            presence: Presence::Away,
            ..skilled(agent("b", 5, 0, 0))
        };
        let rona = Agent {
            presence: Presence::Rona,
            ..skilled(agent("c", 5, 0, 0))
        };
        let full = skilled(agent("d", 5, 3, 0));
        let unskilled = agent("e", 5, 0, 0);
        let maxed = skilled(agent("f", 5, 0, 0));
        let rejected = skilled(agent("g", 5, 0, 0));
        let pending_full = Agent {
            pending_units: 3,
            ..skilled(agent("h", 5, 0, 0))
        };
        let mut junior = agent("i", 5, 0, 0);
        junior.skills.push(Skill {
            name: "billing".into(),
            level: 2,
        });
        let no_voice = Agent {
            excluded_channels: vec![Channel::Voice],
            ..skilled(agent("j", 5, 0, 0))
        };
        let members = vec![
            view(&ok),
            view(&away),
            view(&rona),
            view(&full),
            view(&unskilled),
            CandidateView {
                open_in_queue: 2,
                ..view(&maxed)
            },
            CandidateView {
                already_offered: true,
                ..view(&rejected)
            },
            view(&pending_full),
            view(&junior),
            view(&no_voice),
        ];
        let decision = decide(&q, Channel::Voice, &members, "");
        assert_eq!(decision.chosen, Some(("a".into(), 3)));
        assert_eq!(
            reasons(&decision),
            vec![
                ("a".into(), PassReason::Chosen),
                ("b".into(), PassReason::NotAvailable),
                ("c".into(), PassReason::Rona),
                ("d".into(), PassReason::NoCapacity),
                ("e".into(), PassReason::MissingSkill),
                ("f".into(), PassReason::MaxOpenReached),
                ("g".into(), PassReason::AlreadyOffered),
                ("h".into(), PassReason::NoCapacity),
                ("i".into(), PassReason::MissingSkill),
                ("j".into(), PassReason::ChannelExcluded),
            ]
        );
        // The excluded agent is still offered the channels it takes.
        let chat = decide(&q, Channel::Webchat, &[view(&no_voice)], "");
        assert_eq!(chat.chosen, Some(("j".into(), 1)));
    }

    #[test]
    fn nobody_eligible_chooses_nobody() {
        let busy = Agent {
            presence: Presence::Busy,
            ..agent("a", 1, 0, 0)
        };
        let decision = decide(
            &queue(AssignmentMethod::LongestIdle),
            Channel::Webchat,
            &[view(&busy)],
            "",
        );
        assert_eq!(decision.chosen, None);
        assert_eq!(
            reasons(&decision),
            vec![("a".into(), PassReason::NotAvailable)]
        );
    }

    #[test]
    fn most_available_capacity_prefers_free_units_then_idle_time() {
        let a = agent("a", 5, 3, 10);
        let b = agent("b", 5, 1, 30);
        let c = agent("c", 5, 1, 20);
        let q = queue(AssignmentMethod::MostAvailableCapacity);
        let decision = decide(&q, Channel::Webchat, &[view(&a), view(&b), view(&c)], "");
        assert_eq!(decision.chosen, Some(("c".into(), 1)));
        assert_eq!(
            reasons(&decision),
            vec![
                ("c".into(), PassReason::Chosen),
                ("b".into(), PassReason::RankedLower),
                ("a".into(), PassReason::RankedLower),
            ]
        );
        assert_eq!(decision.candidates[0].free_units, 4);
    }

    #[test]
    fn longest_idle_prefers_the_earliest_idle_since() {
        let a = agent("a", 5, 0, 50);
        let b = agent("b", 5, 4, 10);
        let q = queue(AssignmentMethod::LongestIdle);
        let decision = decide(&q, Channel::Webchat, &[view(&a), view(&b)], "");
        assert_eq!(decision.chosen, Some(("b".into(), 1)));
    }

    #[test]
    fn round_robin_takes_the_next_agent_after_the_cursor_and_wraps() {
        let a = agent("a", 5, 0, 0);
        let b = agent("b", 5, 0, 0);
        let c = agent("c", 5, 0, 0);
        let q = queue(AssignmentMethod::RoundRobin);
        let members = [view(&c), view(&a), view(&b)];
        let mut cursor = String::new();
        let mut order = Vec::new();
        for _ in 0..4 {
            let (chosen, _) = decide(&q, Channel::Webchat, &members, &cursor)
                .chosen
                .unwrap();
            order.push(chosen.clone());
            cursor = chosen;
        }
        assert_eq!(order, ["a", "b", "c", "a"]);
        // An ineligible agent is skipped without breaking the rotation.
        let busy_b = Agent {
            presence: Presence::Busy,
            ..b.clone()
        };
        let decision = decide(
            &q,
            Channel::Webchat,
            &[view(&a), view(&busy_b), view(&c)],
            "a",
        );
        assert_eq!(decision.chosen.unwrap().0, "c");
    }

    #[test]
    fn manual_pick_offers_nothing() {
        let a = agent("a", 5, 0, 0);
        let decision = decide(
            &queue(AssignmentMethod::ManualPick),
            Channel::Webchat,
            &[view(&a)],
            "",
        );
        assert_eq!(decision.chosen, None);
        assert_eq!(
            reasons(&decision),
            vec![("a".into(), PassReason::RankedLower)]
        );
    }

    #[test]
    fn channel_cost_decides_capacity() {
        // Voice costs 3 for these agents, chat 1.
        let a = agent("a", 3, 1, 0);
        let q = queue(AssignmentMethod::MostAvailableCapacity);
        assert_eq!(
            check_eligible(&q, Channel::Voice, &view(&a)),
            Err(PassReason::NoCapacity)
        );
        assert_eq!(check_eligible(&q, Channel::Webchat, &view(&a)), Ok(1));
    }

    /// A large queue's decision lists the chosen agent and the best-ranked others, and
    /// counts the rest by reason: its size does not grow with the queue.
    #[test]
    fn a_large_queue_lists_the_best_candidates_and_counts_the_rest() {
        let q = queue(AssignmentMethod::LongestIdle);
        let mut members = Vec::new();
        for i in 0..300 {
            let mut member = agent(&format!("a{i:03}"), 10, 0, i64::from(i));
            if i % 3 == 0 {
                member.presence = Presence::Away;
            }
            members.push(member);
        }
        let views: Vec<CandidateView<'_>> = members.iter().map(view).collect();
        let decision = decide(&q, Channel::Webchat, &views, "");
        assert_eq!(
            decision.chosen.as_ref().map(|(id, _)| id.as_str()),
            Some("a001")
        );
        assert_eq!(decision.candidates.len(), LISTED_CANDIDATES);
        assert_eq!(decision.candidates[0].reason, PassReason::Chosen.as_i32());
        assert!(
            decision.candidates[1..]
                .iter()
                .all(|c| c.reason == PassReason::RankedLower.as_i32()),
            "the eligible ones come before the passed-over ones"
        );
        let counted: i32 = decision.omitted.iter().map(|o| o.count).sum();
        assert_eq!(decision.candidates.len() + counted as usize, 300);
        assert_eq!(
            decision.omitted,
            vec![
                Omitted {
                    reason: PassReason::NotAvailable.as_i32(),
                    count: 100,
                },
                Omitted {
                    reason: PassReason::RankedLower.as_i32(),
                    count: 200 - 25,
                },
            ]
        );
    }

    #[test]
    fn a_queue_that_does_not_offer_its_backlog_on_login_holds_back_earlier_conversations() {
        let mut q = queue(AssignmentMethod::LongestIdle);
        let logged_in = Agent {
            login_time: 100,
            ..agent("a", 5, 0, 0)
        };
        // The default offers the backlog to whoever logs in.
        assert!(!waiting_before_login(&q, &logged_in, 50));
        q.offer_waiting_on_login = false;
        assert!(waiting_before_login(&q, &logged_in, 50));
        assert!(waiting_before_login(&q, &logged_in, 99));
        assert!(
            !waiting_before_login(&q, &logged_in, 100),
            "entered at login"
        );
        assert!(!waiting_before_login(&q, &logged_in, 150));
        // An agent whose login was never recorded is offered everything.
        assert!(!waiting_before_login(&q, &agent("b", 5, 0, 0), 50));
    }

    #[test]
    fn a_conversation_held_back_on_login_goes_to_another_agent_with_the_reason_recorded() {
        let q = Queue {
            offer_waiting_on_login: false,
            ..queue(AssignmentMethod::LongestIdle)
        };
        let newcomer = Agent {
            login_time: 100,
            ..agent("a", 5, 0, 0)
        };
        let veteran = Agent {
            login_time: 10,
            ..agent("b", 5, 0, 50)
        };
        let entered = 60;
        let members: Vec<CandidateView<'_>> = [&newcomer, &veteran]
            .into_iter()
            .map(|agent| CandidateView {
                waiting_before_login: waiting_before_login(&q, agent, entered),
                ..view(agent)
            })
            .collect();
        let decision = decide(&q, Channel::Webchat, &members, "");
        assert_eq!(decision.chosen, Some(("b".into(), 1)));
        assert_eq!(
            reasons(&decision),
            vec![
                ("b".into(), PassReason::Chosen),
                ("a".into(), PassReason::WaitingBeforeLogin),
            ]
        );
        let alone = decide(&q, Channel::Webchat, &members[..1], "");
        assert_eq!(alone.chosen, None, "nobody else: it keeps waiting");
    }
}
