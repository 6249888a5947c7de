//! Consult and conference (product rule 8): who may invite whom in which state, when an
//! accepted invitation still brings the agent in, and who may end a conference. A
//! consultant is hidden from the customer and holds no capacity; a conference agent is
//! seen by the customer and holds capacity like the owner.

use super::access::ParticipantRole;
use super::state::State;

/// Why an invitation, its cancellation or the end of a conference is refused; each is
/// FAILED_PRECONDITION.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InviteRefusal {
    /// Only the owner invites, cancels and ends the conference.
    #[error("only the owner can {0}")]
    NotOwner(&'static str),
    /// Invitations are for a conversation being worked.
    #[error("cannot invite to a conversation in state {0}; it must be ACTIVE or WAITING")]
    State(State),
    /// The owner does not invite itself.
    #[error("the owner cannot invite itself")]
    Owner,
    /// The agent takes part already.
    #[error("agent {0} already takes part in the conversation")]
    Present(String),
    /// The agent has an invitation waiting for an answer already.
    #[error("agent {0} is already invited and has not answered")]
    Invited(String),
    /// A transfer waits for its answer; the conversation may change hands.
    #[error("a transfer of the conversation is waiting for an answer")]
    TransferPending,
    /// Nobody takes part in a conference now.
    #[error("no conference is going on")]
    NoConference,
}

/// The roles an agent may be invited in.
pub fn invitable(role: ParticipantRole) -> bool {
    matches!(
        role,
        ParticipantRole::Consultant | ParticipantRole::Conference
    )
}

/// What an invitation is checked against.
#[derive(Clone, Copy, Debug)]
pub struct InviteCheck<'a> {
    /// The conversation's state.
    pub state: State,
    /// Its owner, if any.
    pub owner: Option<&'a str>,
    /// Who asks.
    pub caller: &'a str,
    /// The agent invited.
    pub agent: &'a str,
    /// Users taking part now.
    pub present: &'a [&'a str],
    /// Agents with an invitation waiting for an answer.
    pub invited: &'a [&'a str],
    /// Whether a transfer waits for its answer.
    pub transfer_pending: bool,
}

/// Whether the owner may invite `agent` now.
pub fn check_invite(check: InviteCheck<'_>) -> Result<(), InviteRefusal> {
    if check.owner != Some(check.caller) {
        return Err(InviteRefusal::NotOwner("invite another agent"));
    }
    if !matches!(check.state, State::Active | State::Waiting) {
        return Err(InviteRefusal::State(check.state));
    }
    if check.agent == check.caller {
        return Err(InviteRefusal::Owner);
    }
    if check.present.contains(&check.agent) {
        return Err(InviteRefusal::Present(check.agent.to_owned()));
    }
    if check.invited.contains(&check.agent) {
        return Err(InviteRefusal::Invited(check.agent.to_owned()));
    }
    if check.transfer_pending {
        return Err(InviteRefusal::TransferPending);
    }
    Ok(())
}

/// Whether an accepted invitation sent by `inviter` still brings its agent in: the
/// conversation is still worked by the same owner (an owner change or the end of the chat
/// withdraws invitations, but the agent may have accepted first).
pub fn still_joinable(state: State, owner: Option<&str>, inviter: &str) -> bool {
    matches!(state, State::Active | State::Waiting) && owner == Some(inviter)
}

/// Whether `caller` may end the conference of a conversation owned by `owner` with
/// `conference_agents` conference agents present.
pub fn check_end_conference(
    owner: Option<&str>,
    caller: &str,
    conference_agents: usize,
) -> Result<(), InviteRefusal> {
    if owner != Some(caller) {
        return Err(InviteRefusal::NotOwner("end the conference"));
    }
    if conference_agents == 0 {
        return Err(InviteRefusal::NoConference);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<'a>(state: State, present: &'a [&'a str], invited: &'a [&'a str]) -> InviteCheck<'a> {
        InviteCheck {
            state,
            owner: Some("owner"),
            caller: "owner",
            agent: "b",
            present,
            invited,
            transfer_pending: false,
        }
    }

    #[test]
    fn the_owner_invites_while_the_conversation_is_worked() {
        for state in State::ALL {
            let allowed = check_invite(check(state, &["owner"], &[])).is_ok();
            assert_eq!(
                allowed,
                matches!(state, State::Active | State::Waiting),
                "{state}"
            );
        }
    }

    #[test]
    fn nobody_else_invites() {
        let mut c = check(State::Active, &["owner", "c"], &[]);
        c.caller = "c";
        assert_eq!(
            check_invite(c),
            Err(InviteRefusal::NotOwner("invite another agent"))
        );
    }

    #[test]
    fn an_agent_is_invited_once_and_never_the_owner_or_someone_present() {
        let mut c = check(State::Active, &["owner", "b"], &[]);
        assert_eq!(check_invite(c), Err(InviteRefusal::Present("b".into())));
        c.present = &["owner"];
        c.invited = &["b"];
        assert_eq!(check_invite(c), Err(InviteRefusal::Invited("b".into())));
        c.invited = &["d"];
        assert_eq!(check_invite(c), Ok(()));
        c.agent = "owner";
        assert_eq!(check_invite(c), Err(InviteRefusal::Owner));
    }

    #[test]
    fn no_invitation_while_a_transfer_waits() {
        let mut c = check(State::Active, &["owner"], &[]);
        c.transfer_pending = true;
        assert_eq!(check_invite(c), Err(InviteRefusal::TransferPending));
    }

    #[test]
    fn an_accepted_invitation_joins_only_while_the_inviter_still_owns_it() {
        assert!(still_joinable(State::Active, Some("a"), "a"));
        assert!(still_joinable(State::Waiting, Some("a"), "a"));
        assert!(!still_joinable(State::Active, Some("b"), "a"));
        assert!(!still_joinable(State::Open, None, "a"));
        assert!(!still_joinable(State::WrapUp, Some("a"), "a"));
        assert!(!still_joinable(State::Closed, None, "a"));
    }

    #[test]
    fn only_the_owner_ends_a_conference_that_is_going_on() {
        assert_eq!(check_end_conference(Some("a"), "a", 1), Ok(()));
        assert_eq!(
            check_end_conference(Some("a"), "b", 1),
            Err(InviteRefusal::NotOwner("end the conference"))
        );
        assert_eq!(
            check_end_conference(Some("a"), "a", 0),
            Err(InviteRefusal::NoConference)
        );
    }

    #[test]
    fn only_consultant_and_conference_roles_are_invited() {
        for role in ParticipantRole::ALL {
            assert_eq!(
                invitable(role),
                matches!(
                    role,
                    ParticipantRole::Consultant | ParticipantRole::Conference
                )
            );
        }
    }
}
