//! The offer state machine: an offer is answered at most once, and only while pending.

use std::collections::{BTreeMap, HashSet};

use crate::domain::types::{Offer, OfferState};

/// What can happen to an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferEvent {
    /// The agent accepted before the deadline.
    Accept,
    /// The agent rejected.
    Reject,
    /// The deadline passed without an answer.
    Timeout,
    /// The conversation left the queue or the agent became unavailable.
    Withdraw,
}

/// An event that does not apply to an offer in its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The offer was already resolved.
    #[error("offer is no longer pending (it is {0:?})")]
    NotPending(OfferState),
    /// The deadline passed; the offer is about to time out.
    #[error("offer expired")]
    Expired,
}

impl OfferState {
    /// Whether the offer still awaits an answer.
    pub fn is_pending(self) -> bool {
        self == OfferState::Pending
    }

    /// The state after `event`, or why it does not apply.
    pub fn apply(self, event: OfferEvent) -> Result<OfferState, OfferError> {
        if !self.is_pending() {
            return Err(OfferError::NotPending(self));
        }
        Ok(match event {
            OfferEvent::Accept => OfferState::Accepted,
            OfferEvent::Reject => OfferState::Rejected,
            OfferEvent::Timeout => OfferState::TimedOut,
            OfferEvent::Withdraw => OfferState::Withdrawn,
        })
    }

    /// Whether an offer resolved this way puts the agent in RONA.
    pub fn puts_agent_in_rona(self) -> bool {
        self == OfferState::TimedOut
    }

    /// Whether an offer resolved this way keeps the agent from being offered the same
    /// conversation again while it waits.
    pub fn excludes_agent(self) -> bool {
        matches!(
            self,
            OfferState::Pending | OfferState::Rejected | OfferState::TimedOut
        )
    }
}

/// Checks that an agent may accept a pending offer at `now`: pending and not past its
/// deadline (an offer past its deadline is about to time out).
pub fn check_accept(state: OfferState, expire_time: i64, now: i64) -> Result<(), OfferError> {
    state.apply(OfferEvent::Accept)?;
    if now >= expire_time {
        return Err(OfferError::Expired);
    }
    Ok(())
}

/// What timing out the offers `due` at `now` does, given every pending offer of their
/// agents (`pending`, in any order): for each agent, its earliest offer due (past its
/// deadline, among `due`) times out and puts the agent in RONA, and the agent's other
/// pending offers are withdrawn, since an agent in RONA is offered nothing. An agent
/// without such an offer keeps its offers. In agent id order, each agent's time-out first,
/// then its withdrawals oldest first: the order the events are written in.
pub fn time_outs<'a>(
    pending: &'a [Offer],
    due: &HashSet<&str>,
    now: i64,
) -> Vec<(&'a Offer, OfferState)> {
    let mut by_agent: BTreeMap<&str, Vec<&Offer>> = BTreeMap::new();
    for offer in pending.iter().filter(|offer| offer.state.is_pending()) {
        by_agent.entry(&offer.agent_id).or_default().push(offer);
    }
    let mut outcome = Vec::new();
    for offers in by_agent.values_mut() {
        let Some(timed_out) = offers
            .iter()
            .filter(|offer| due.contains(offer.id.as_str()) && offer.expire_time <= now)
            .min_by_key(|offer| (offer.expire_time, &offer.id))
            .copied()
        else {
            continue;
        };
        offers.sort_by_key(|offer| (offer.create_time, &offer.id));
        outcome.push((timed_out, OfferState::TimedOut));
        outcome.extend(
            offers
                .iter()
                .filter(|offer| offer.id != timed_out.id)
                .map(|offer| (*offer, OfferState::Withdrawn)),
        );
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::{Channel, OfferKind};

    fn offer(id: &str, agent: &str, create_time: i64, expire_time: i64) -> Offer {
        Offer {
            id: id.into(),
            tenant_id: "t".into(),
            conversation_id: format!("c-{id}"),
            queue_id: "q".into(),
            agent_id: agent.into(),
            channel: Channel::Webchat,
            kind: OfferKind::Queue,
            state: OfferState::Pending,
            create_time,
            expire_time,
            resolve_time: None,
            customer_display_name: String::new(),
            capacity_units: 1,
            channel_address: String::new(),
            queue_display_name: String::new(),
            wait_start_time: 0,
            reject_reason: String::new(),
            reference_id: String::new(),
            sender_id: String::new(),
            sender_display_name: String::new(),
            note: String::new(),
        }
    }

    fn outcome<'a>(plan: &[(&'a Offer, OfferState)]) -> Vec<(&'a str, OfferState)> {
        plan.iter().map(|(o, s)| (o.id.as_str(), *s)).collect()
    }

    #[test]
    fn the_earliest_due_offer_times_out_and_the_agents_others_are_withdrawn() {
        let pending = [
            offer("b2", "b", 5, 50),
            offer("a3", "a", 30, 300),
            offer("a1", "a", 10, 100),
            offer("a2", "a", 20, 90),
            offer("b1", "b", 4, 500),
            offer("c1", "c", 1, 10),
        ];
        // a2 falls due before a1; b1 is not due yet; c has no offer asked for.
        let due = HashSet::from(["a1", "a2", "b1", "b2"]);
        assert_eq!(
            outcome(&time_outs(&pending, &due, 100)),
            vec![
                ("a2", OfferState::TimedOut),
                ("a1", OfferState::Withdrawn),
                ("a3", OfferState::Withdrawn),
                ("b2", OfferState::TimedOut),
                ("b1", OfferState::Withdrawn),
            ]
        );
    }

    #[test]
    fn nothing_times_out_before_its_deadline_or_once_resolved() {
        let mut resolved = offer("a1", "a", 1, 10);
        resolved.state = OfferState::Accepted;
        let pending = [resolved, offer("b1", "b", 1, 101)];
        let due = HashSet::from(["a1", "b1"]);
        assert!(time_outs(&pending, &due, 100).is_empty());
        assert_eq!(
            outcome(&time_outs(&pending, &due, 101)),
            vec![("b1", OfferState::TimedOut)]
        );
    }

    #[test]
    fn only_pending_offers_move() {
        assert_eq!(
            OfferState::Pending.apply(OfferEvent::Accept),
            Ok(OfferState::Accepted)
        );
        assert_eq!(
            OfferState::Pending.apply(OfferEvent::Reject),
            Ok(OfferState::Rejected)
        );
        assert_eq!(
            OfferState::Pending.apply(OfferEvent::Timeout),
            Ok(OfferState::TimedOut)
        );
        assert_eq!(
            OfferState::Pending.apply(OfferEvent::Withdraw),
            Ok(OfferState::Withdrawn)
        );
        for resolved in [
            OfferState::Accepted,
            OfferState::Rejected,
            OfferState::TimedOut,
            OfferState::Withdrawn,
        ] {
            for event in [
                OfferEvent::Accept,
                OfferEvent::Reject,
                OfferEvent::Timeout,
                OfferEvent::Withdraw,
            ] {
                assert_eq!(resolved.apply(event), Err(OfferError::NotPending(resolved)));
            }
        }
    }

    #[test]
    fn accept_after_the_deadline_is_refused() {
        assert_eq!(check_accept(OfferState::Pending, 100, 99), Ok(()));
        assert_eq!(
            check_accept(OfferState::Pending, 100, 100),
            Err(OfferError::Expired)
        );
        assert_eq!(
            check_accept(OfferState::Accepted, 100, 1),
            Err(OfferError::NotPending(OfferState::Accepted))
        );
    }

    #[test]
    fn only_a_timeout_means_rona_and_withdrawal_does_not_exclude() {
        assert!(OfferState::TimedOut.puts_agent_in_rona());
        assert!(!OfferState::Rejected.puts_agent_in_rona());
        assert!(OfferState::Rejected.excludes_agent());
        assert!(OfferState::TimedOut.excludes_agent());
        assert!(!OfferState::Withdrawn.excludes_agent());
        assert!(!OfferState::Accepted.excludes_agent());
    }
}
