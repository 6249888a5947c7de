//! Rules of the directory: names of roles and supervisor actions as stored and as signed
//! into identities, and validation of the fields clients send.

use std::time::Duration;

use switchboard_proto::directory::v1::{Role, SupervisorAction};
use switchboard_server_kit::Role as KitRole;
use switchboard_server_kit::fields::snake_case_path;
use switchboard_server_kit::mask_pans;

/// A request field that breaks a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field, e.g. `user.email`.
    pub field: String,
    /// What is wrong, e.g. `must contain @`.
    pub description: String,
}

impl FieldError {
    /// A violation of `field`.
    pub fn new(field: &str, description: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            description: description.into(),
        }
    }
}

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
/// Longest email address, in bytes (RFC 5321).
pub const MAX_EMAIL_LEN: usize = 254;
/// Reopen window when the tenant has set none.
pub const DEFAULT_REOPEN_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Longest reopen window a tenant may set.
pub const MAX_REOPEN_WINDOW: Duration = Duration::from_secs(90 * 24 * 3600);

/// The stored (and signed) name of a role.
pub fn role_name(role: Role) -> Option<&'static str> {
    Some(match role {
        Role::Unspecified => return None,
        Role::Agent => "agent",
        Role::Supervisor => "supervisor",
        Role::Administrator => "administrator",
        Role::Analyst => "analyst",
        Role::Bot => "bot",
    })
}

/// The role stored as `name`.
pub fn role_from_name(name: &str) -> Option<Role> {
    Some(match name {
        "agent" => Role::Agent,
        "supervisor" => Role::Supervisor,
        "administrator" => Role::Administrator,
        "analyst" => Role::Analyst,
        "bot" => Role::Bot,
        _ => return None,
    })
}

/// The identity role granted by a directory role.
pub fn kit_role(role: Role) -> Option<KitRole> {
    Some(match role {
        Role::Unspecified => return None,
        Role::Agent => KitRole::Agent,
        Role::Supervisor => KitRole::Supervisor,
        Role::Administrator => KitRole::Administrator,
        Role::Analyst => KitRole::Analyst,
        Role::Bot => KitRole::Bot,
    })
}

/// The directory role behind an identity role; `None` for the service role.
pub fn directory_role(role: KitRole) -> Option<Role> {
    Some(match role {
        KitRole::Agent => Role::Agent,
        KitRole::Supervisor => Role::Supervisor,
        KitRole::Administrator => Role::Administrator,
        KitRole::Analyst => Role::Analyst,
        KitRole::Bot => Role::Bot,
        KitRole::Service => return None,
    })
}

/// The stored (and signed) name of a supervisor action.
pub fn action_name(action: SupervisorAction) -> Option<&'static str> {
    Some(match action {
        SupervisorAction::Unspecified => return None,
        SupervisorAction::Monitor => "monitor",
        SupervisorAction::Join => "join",
        SupervisorAction::Assign => "assign",
        SupervisorAction::Transfer => "transfer",
        SupervisorAction::ForceClose => "force_close",
    })
}

/// The supervisor action stored as `name`.
pub fn action_from_name(name: &str) -> Option<SupervisorAction> {
    Some(match name {
        "monitor" => SupervisorAction::Monitor,
        "join" => SupervisorAction::Join,
        "assign" => SupervisorAction::Assign,
        "transfer" => SupervisorAction::Transfer,
        "force_close" => SupervisorAction::ForceClose,
        _ => return None,
    })
}

/// Roles as stored: names joined by commas, in enum order, without duplicates.
pub fn roles_to_text(roles: &[Role]) -> String {
    let mut sorted: Vec<Role> = roles.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .into_iter()
        .filter_map(role_name)
        .collect::<Vec<_>>()
        .join(",")
}

/// Roles from their stored text; unknown names are skipped.
pub fn roles_from_text(text: &str) -> Vec<Role> {
    text.split(',').filter_map(role_from_name).collect()
}

/// Supervisor actions as stored: names joined by commas, in enum order, without duplicates.
pub fn actions_to_text(actions: &[SupervisorAction]) -> String {
    let mut sorted: Vec<SupervisorAction> = actions.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .into_iter()
        .filter_map(action_name)
        .collect::<Vec<_>>()
        .join(",")
}

/// Supervisor actions from their stored text; unknown names are skipped.
pub fn actions_from_text(text: &str) -> Vec<SupervisorAction> {
    text.split(',').filter_map(action_from_name).collect()
}

/// A display name: trimmed, 1 to 200 characters, card numbers masked (names are shown to
/// customers and copied into every service's tables, so a card number typed as a name
/// must not travel with it).
pub fn display_name(field: &str, value: &str) -> Result<String, FieldError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_DISPLAY_NAME_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(mask_pans(trimmed).into_owned())
}

/// An email address, trimmed and lowercased so that uniqueness ignores case.
pub fn email(field: &str, value: &str) -> Result<String, FieldError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if trimmed.len() > MAX_EMAIL_LEN {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_EMAIL_LEN} characters"),
        ));
    }
    let valid = match trimmed.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if !valid {
        return Err(FieldError::new(
            field,
            "must be an email address like name@example.com",
        ));
    }
    Ok(trimmed.to_lowercase())
}

/// Roles sent as enum numbers: at least one, each a known role other than UNSPECIFIED.
pub fn roles(field: &str, values: &[i32]) -> Result<Vec<Role>, FieldError> {
    if values.is_empty() {
        return Err(FieldError::new(field, "needs at least one role"));
    }
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        match Role::try_from(*value) {
            Ok(Role::Unspecified) | Err(_) => {
                return Err(FieldError::new(
                    field,
                    format!("{value} is not a role (use ROLE_AGENT, ROLE_SUPERVISOR, …)"),
                ));
            }
            Ok(role) => out.push(role),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Supervisor actions sent as enum numbers; each a known action other than UNSPECIFIED.
pub fn supervisor_actions(
    field: &str,
    values: &[i32],
) -> Result<Vec<SupervisorAction>, FieldError> {
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        match SupervisorAction::try_from(*value) {
            Ok(SupervisorAction::Unspecified) | Err(_) => {
                return Err(FieldError::new(
                    field,
                    format!("{value} is not a supervisor action"),
                ));
            }
            Ok(action) => out.push(action),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A reopen window: more than zero, at most 90 days.
pub fn reopen_window(
    field: &str,
    value: Option<&prost_types::Duration>,
) -> Result<Duration, FieldError> {
    let Some(value) = value else {
        return Err(FieldError::new(field, "is required"));
    };
    if value.seconds < 0 || value.nanos < 0 || (value.seconds == 0 && value.nanos == 0) {
        return Err(FieldError::new(field, "must be positive"));
    }
    let window = Duration::new(value.seconds as u64, value.nanos as u32);
    if window > MAX_REOPEN_WINDOW {
        return Err(FieldError::new(field, "must be at most 90 days"));
    }
    Ok(window)
}

/// An IANA time zone name such as `Europe/Paris`; empty means UTC.
pub fn time_zone(field: &str, value: &str) -> Result<String, FieldError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    trimmed
        .parse::<chrono_tz::Tz>()
        .map(|_| trimmed.to_owned())
        .map_err(|_| FieldError::new(field, format!("`{trimmed}` is not an IANA time zone")))
}

/// Longest part of a refused update mask path echoed back in the error, in characters.
const MAX_SHOWN_PATH_CHARS: usize = 64;

/// The fields of an update mask, each one of `allowed` (snake_case, as in the proto; the
/// lowerCamelCase names JSON clients send are accepted too); at least one. Each field is
/// named once, in the order first given.
pub fn update_mask(
    paths: Option<&prost_types::FieldMask>,
    allowed: &[&'static str],
) -> Result<Vec<&'static str>, FieldError> {
    let paths: &[String] = paths.map(|mask| mask.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return Err(FieldError::new("update_mask", "is required"));
    }
    let mut fields = Vec::new();
    for path in paths {
        let name = snake_case_path(path.trim());
        let Some(field) = allowed.iter().copied().find(|f| *f == name) else {
            let shown: String = mask_pans(path).chars().take(MAX_SHOWN_PATH_CHARS).collect();
            return Err(FieldError::new(
                "update_mask",
                format!(
                    "`{shown}` cannot be changed (allowed: {})",
                    allowed.join(", ")
                ),
            ));
        };
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_and_action_names_round_trip() {
        for role in [
            Role::Agent,
            Role::Supervisor,
            Role::Administrator,
            Role::Analyst,
            Role::Bot,
        ] {
            assert_eq!(role_from_name(role_name(role).unwrap()), Some(role));
            assert_eq!(directory_role(kit_role(role).unwrap()), Some(role));
        }
        assert_eq!(role_name(Role::Unspecified), None);
        let actions = [
            SupervisorAction::Monitor,
            SupervisorAction::Join,
            SupervisorAction::Assign,
            SupervisorAction::Transfer,
            SupervisorAction::ForceClose,
        ];
        assert_eq!(
            actions_to_text(&[
                SupervisorAction::ForceClose,
                SupervisorAction::Monitor,
                SupervisorAction::Monitor
            ]),
            "monitor,force_close"
        );
        assert_eq!(actions_from_text(&actions_to_text(&actions)), actions);
        assert_eq!(actions_from_text(""), vec![]);
        assert_eq!(
            roles_from_text(&roles_to_text(&[Role::Bot, Role::Agent])),
            vec![Role::Agent, Role::Bot]
        );
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(display_name("n", "  Ada ").unwrap(), "Ada");
        assert_eq!(
            display_name("n", "   ").unwrap_err().description,
            "is required"
        );
        assert!(display_name("n", &"é".repeat(200)).is_ok());
        assert!(display_name("n", &"é".repeat(201)).is_err());
        assert!(display_name("n", "a\u{7}b").is_err());
    }

    #[test]
    fn card_numbers_in_display_names_are_masked() {
        assert_eq!(
            display_name("n", " Ada 4111.1111.1111.1111 ").unwrap(),
            "Ada 4111.11**.****.1111"
        );
        assert_eq!(
            display_name("n", "Support +49 151 2345678").unwrap(),
            "Support +49 151 2345678"
        );
    }

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(email("e", " Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "a b@example.com",
            "a@b@c",
        ] {
            assert!(email("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_need_one_known_value() {
        assert_eq!(
            roles("r", &[3, 1, 3]).unwrap(),
            vec![Role::Agent, Role::Administrator]
        );
        assert!(roles("r", &[]).is_err());
        assert!(roles("r", &[0]).is_err());
        assert!(roles("r", &[42]).is_err());
        assert!(supervisor_actions("a", &[]).unwrap().is_empty());
        assert!(supervisor_actions("a", &[9]).is_err());
    }

    #[test]
    fn settings_values_are_checked() {
        let hour = prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        };
        assert_eq!(
            reopen_window("w", Some(&hour)).unwrap(),
            Duration::from_secs(3600)
        );
        assert!(reopen_window("w", None).is_err());
        assert!(
            reopen_window(
                "w",
                Some(&prost_types::Duration {
                    seconds: 0,
                    nanos: 0
                })
            )
            .is_err()
        );
        assert!(
            reopen_window(
                "w",
                Some(&prost_types::Duration {
                    seconds: 91 * 86_400,
                    nanos: 0
                })
            )
            .is_err()
        );
        assert_eq!(time_zone("z", "Europe/Paris").unwrap(), "Europe/Paris");
        assert_eq!(time_zone("z", "").unwrap(), "");
        assert!(time_zone("z", "Mars/Olympus").is_err());
    }

    #[test]
    fn update_masks_name_allowed_fields() {
        let mask = prost_types::FieldMask {
            paths: vec!["display_name".into(), "active".into()],
        };
        assert_eq!(
            update_mask(Some(&mask), &["display_name", "roles", "active"]).unwrap(),
            vec!["display_name", "active"]
        );
        assert!(update_mask(Some(&mask), &["roles"]).is_err());
        assert!(update_mask(None, &["roles"]).is_err());
    }

    #[test]
    fn update_masks_accept_lower_camel_case_and_name_each_field_once() {
        let mask = prost_types::FieldMask {
            paths: vec!["teamIds".into(), "displayName".into(), "team_ids".into()],
        };
        assert_eq!(
            update_mask(Some(&mask), &["display_name", "team_ids"]).unwrap(),
            vec!["team_ids", "display_name"]
        );
        let long = prost_types::FieldMask {
            paths: vec!["x".repeat(100_000)],
        };
        let err = update_mask(Some(&long), &["display_name"]).unwrap_err();
        assert!(err.description.len() < 200, "{}", err.description);
    }
}
