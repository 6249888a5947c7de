//! Who may be given a routing profile. Users live in the gateway's directory, so routing
//! asks it about the user first; these are the rules it then applies to the answer.

/// What the directory holds about the user a profile is for, in the caller's tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The name the directory holds (card numbers masked, bounded).
    pub display_name: String,
    /// Whether the user may sign in.
    pub active: bool,
    /// Whether the user holds the AGENT role.
    pub is_agent: bool,
}

/// Why a user cannot be given a routing profile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileSubjectError {
    /// No such user in the caller's tenant (which includes users of other tenants).
    #[error("user {0} not found")]
    NotFound(String),
    /// The user is deactivated in the directory.
    #[error(
        "user {0} is deactivated; reactivate it in the directory before giving it a routing profile"
    )]
    Inactive(String),
    /// The user is not an agent.
    #[error(
        "user {0} does not hold the AGENT role; grant it in the directory before giving it a routing profile"
    )]
    NotAnAgent(String),
}

/// Checks that `user`, the directory's answer for `agent_id`, may get a routing profile,
/// and returns the name to store with it.
pub fn check_subject(
    agent_id: &str,
    user: Option<DirectoryUser>,
) -> Result<String, ProfileSubjectError> {
    let user = user.ok_or_else(|| ProfileSubjectError::NotFound(agent_id.to_owned()))?;
    if !user.active {
        return Err(ProfileSubjectError::Inactive(agent_id.to_owned()));
    }
    if !user.is_agent {
        return Err(ProfileSubjectError::NotAnAgent(agent_id.to_owned()));
    }
    Ok(user.display_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(active: bool, is_agent: bool) -> Option<DirectoryUser> {
        Some(DirectoryUser {
            display_name: "Ada".to_owned(),
            active,
            is_agent,
        })
    }

    #[test]
    fn only_an_active_agent_of_the_tenant_gets_a_profile() {
        assert_eq!(check_subject("a1", user(true, true)), Ok("Ada".to_owned()));
        assert_eq!(
            check_subject("a1", None),
            Err(ProfileSubjectError::NotFound("a1".to_owned()))
        );
        assert_eq!(
            check_subject("a1", user(false, true)),
            Err(ProfileSubjectError::Inactive("a1".to_owned()))
        );
        assert_eq!(
            check_subject("a1", user(true, false)),
            Err(ProfileSubjectError::NotAnAgent("a1".to_owned()))
        );
        // Deactivation is reported first: granting the role would not be enough.
        assert_eq!(
            check_subject("a1", user(false, false)),
            Err(ProfileSubjectError::Inactive("a1".to_owned()))
        );
    }
}
