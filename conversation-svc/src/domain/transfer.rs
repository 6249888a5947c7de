//! What happens to a transfer to an agent that the agent does not take (rule 8): the
//! target queue's fallback, when the conversation is still where the transfer left it.

use super::state::State;

/// A queue's transfer fallback, as the protobuf `TransferFallback` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The sender keeps the conversation (the default).
    ReturnToSender,
    /// The conversation waits in the target queue for another agent.
    Requeue,
    /// The conversation is closed.
    Drop,
}

impl Fallback {
    /// The fallback of a protobuf number; unset or unknown means return to the sender.
    pub fn from_code(code: i32) -> Fallback {
        match code {
            2 => Fallback::Requeue,
            3 => Fallback::Drop,
            _ => Fallback::ReturnToSender,
        }
    }

    /// The protobuf number.
    pub fn code(self) -> i32 {
        match self {
            Fallback::ReturnToSender => 1,
            Fallback::Requeue => 2,
            Fallback::Drop => 3,
        }
    }
}

/// The fallback to apply to a transfer not taken, or `None` when the conversation moved
/// on meanwhile (no longer ACTIVE or WAITING with the sender as owner): then nothing
/// changes but the transfer's outcome.
pub fn fallback_to_apply(
    fallback: Fallback,
    state: State,
    owner: Option<&str>,
    sender: &str,
) -> Option<Fallback> {
    (matches!(state, State::Active | State::Waiting) && owner == Some(sender)).then_some(fallback)
}

/// The state a conversation enters when a transfer to an agent is accepted: the receiver
/// works it (ACTIVE), or `None` when it is no longer the sender's to give.
pub fn accepted_state(state: State, owner: Option<&str>, sender: &str) -> Option<State> {
    (matches!(state, State::Active | State::Waiting) && owner == Some(sender))
        .then_some(State::Active)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_applies_only_while_the_sender_still_has_it() {
        for fallback in [Fallback::ReturnToSender, Fallback::Requeue, Fallback::Drop] {
            for state in State::ALL {
                let got = fallback_to_apply(fallback, state, Some("s"), "s");
                let live = matches!(state, State::Active | State::Waiting);
                assert_eq!(got, live.then_some(fallback), "{state} {fallback:?}");
                assert_eq!(fallback_to_apply(fallback, state, Some("x"), "s"), None);
                assert_eq!(fallback_to_apply(fallback, state, None, "s"), None);
            }
        }
    }

    #[test]
    fn codes_match_the_protobuf_enum_and_default_to_return() {
        use switchboard_proto::common::v1::TransferFallback as Proto;
        for fallback in [Fallback::ReturnToSender, Fallback::Requeue, Fallback::Drop] {
            assert_eq!(Fallback::from_code(fallback.code()), fallback);
            assert!(Proto::try_from(fallback.code()).is_ok());
        }
        assert_eq!(Fallback::from_code(0), Fallback::ReturnToSender);
    }

    #[test]
    fn an_accepted_transfer_is_worked_by_the_receiver() {
        assert_eq!(
            accepted_state(State::Waiting, Some("s"), "s"),
            Some(State::Active)
        );
        assert_eq!(
            accepted_state(State::Active, Some("s"), "s"),
            Some(State::Active)
        );
        assert_eq!(accepted_state(State::WrapUp, Some("s"), "s"), None);
        assert_eq!(accepted_state(State::Active, Some("x"), "s"), None);
    }
}
