//! Queue membership over time: what lets a decision say an agent was not a member of its
//! queue when it was made, though decisions record only the members they considered.

use crate::domain::{Candidate, PassReason, RoutingDecision};

/// A period during which an agent was a member of a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipPeriod {
    /// The queue.
    pub queue_id: String,
    /// When the agent joined it (0: before records began).
    pub join_time: i64,
    /// When it left; `None` while still a member.
    pub leave_time: Option<i64>,
}

/// Whether one of `periods` covers `queue_id` at `at`.
pub fn was_member(periods: &[MembershipPeriod], queue_id: &str, at: i64) -> bool {
    periods.iter().any(|p| {
        p.queue_id == queue_id && p.join_time <= at && p.leave_time.is_none_or(|left| left > at)
    })
}

/// Adds `agent_id` last to `decision`'s candidates as not a member when the decision does
/// not list it and, by `periods` (the agent's), it was not a member of the decision's queue
/// when the decision was made. One that was a member but is not listed was among the
/// candidates the decision only counted, and is left so.
pub fn name_if_not_a_member(
    decision: &mut RoutingDecision,
    agent_id: &str,
    periods: &[MembershipPeriod],
) {
    let listed = decision.candidates.iter().any(|c| c.agent_id == agent_id);
    if !listed && !was_member(periods, &decision.queue_id, decision.decide_time) {
        decision.candidates.push(Candidate {
            agent_id: agent_id.to_owned(),
            reason: PassReason::NotAMember.as_i32(),
            free_units: 0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AssignmentMethod;

    fn period(queue_id: &str, join_time: i64, leave_time: Option<i64>) -> MembershipPeriod {
        MembershipPeriod {
            queue_id: queue_id.into(),
            join_time,
            leave_time,
        }
    }

    fn decision(queue_id: &str, decide_time: i64, listed: &[&str]) -> RoutingDecision {
        RoutingDecision {
            id: "d".into(),
            tenant_id: "t".into(),
            offer_id: None,
            conversation_id: "c".into(),
            queue_id: queue_id.into(),
            assignment_method: AssignmentMethod::RoundRobin,
            candidates: listed
                .iter()
                .map(|a| Candidate {
                    agent_id: (*a).into(),
                    reason: PassReason::NotAvailable.as_i32(),
                    free_units: 1,
                })
                .collect(),
            omitted: vec![],
            decide_time,
        }
    }

    #[test]
    fn membership_covers_from_joining_until_leaving() {
        let periods = [period("q", 10, Some(20)), period("q", 30, None)];
        for (at, member) in [(9, false), (10, true), (19, true), (20, false), (29, false)] {
            assert_eq!(was_member(&periods, "q", at), member, "at {at}");
        }
        assert!(was_member(&periods, "q", i64::MAX));
        assert!(!was_member(&periods, "other", 15));
    }

    #[test]
    fn an_agent_is_named_only_when_it_was_not_a_member_then() {
        let periods = [period("q", 10, Some(20))];
        let mut before_joining = decision("q", 5, &["ada"]);
        name_if_not_a_member(&mut before_joining, "bob", &periods);
        let named = before_joining.candidates.last().unwrap();
        assert_eq!(
            (named.agent_id.as_str(), named.reason),
            ("bob", PassReason::NotAMember.as_i32())
        );

        let mut while_member = decision("q", 15, &["ada"]);
        name_if_not_a_member(&mut while_member, "bob", &periods);
        assert_eq!(
            while_member.candidates.len(),
            1,
            "counted among the omitted"
        );

        let mut listed = decision("q", 25, &["bob"]);
        name_if_not_a_member(&mut listed, "bob", &periods);
        assert_eq!(listed.candidates.len(), 1, "already listed as it was");
    }
}
