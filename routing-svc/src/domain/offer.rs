//! The offer state machine: an offer is answered at most once, and only while pending.

use crate::domain::types::OfferState;

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

#[cfg(test)]
mod tests {
    use super::*;

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
