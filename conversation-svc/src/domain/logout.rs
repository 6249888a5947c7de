//! What becomes of a conversation when its agent logs out in a queue that returns
//! conversations on logout.

use std::fmt;

use crate::domain::state::State;

/// Why a conversation stays where it is when its agent logs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stays {
    /// The agent does not own it (any more): someone else does, or nobody.
    NotOwner,
    /// The agent got it after logging out (a supervisor's assignment): the logout is not
    /// about this ownership.
    OwnedSinceLogout,
    /// Wrap-up stays with the agent, who ended the chat; a closed one has no owner.
    NotInProgress(State),
}

impl fmt::Display for Stays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stays::NotOwner => f.write_str("the agent does not own it"),
            Stays::OwnedSinceLogout => f.write_str("the agent got it after logging out"),
            Stays::NotInProgress(state) => write!(f, "it is {state:?}"),
        }
    }
}

/// Whether a conversation in `state`, owned by `owner` since `owned_since` (the start of
/// the owner's segment), goes back to its queue because `agent_id` logged out at
/// `logout_time`. Only one the agent owned before the logout, ACTIVE or WAITING, does.
pub fn returns_on_logout(
    state: State,
    owner: Option<&str>,
    owned_since: i64,
    agent_id: &str,
    logout_time: i64,
) -> Result<(), Stays> {
    if owner != Some(agent_id) {
        return Err(Stays::NotOwner);
    }
    if !matches!(state, State::Active | State::Waiting) {
        return Err(Stays::NotInProgress(state));
    }
    if owned_since > logout_time {
        return Err(Stays::OwnedSinceLogout);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owned_conversation_in_progress_returns() {
        for state in [State::Active, State::Waiting] {
            assert_eq!(returns_on_logout(state, Some("a"), 10, "a", 20), Ok(()));
            assert_eq!(
                returns_on_logout(state, Some("a"), 20, "a", 20),
                Ok(()),
                "owned from the very moment of the logout"
            );
        }
    }

    #[test]
    fn wrap_up_and_closed_stay() {
        for state in [State::WrapUp, State::Closed, State::Open] {
            assert_eq!(
                returns_on_logout(state, Some("a"), 10, "a", 20),
                Err(Stays::NotInProgress(state))
            );
        }
    }

    #[test]
    fn another_owner_or_none_means_it_is_not_the_agents_to_return() {
        assert_eq!(
            returns_on_logout(State::Active, Some("b"), 10, "a", 20),
            Err(Stays::NotOwner)
        );
        assert_eq!(
            returns_on_logout(State::Open, None, 10, "a", 20),
            Err(Stays::NotOwner)
        );
    }

    #[test]
    fn an_ownership_that_began_after_the_logout_stays() {
        assert_eq!(
            returns_on_logout(State::Active, Some("a"), 30, "a", 20),
            Err(Stays::OwnedSinceLogout)
        );
    }
}
