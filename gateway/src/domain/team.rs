//! Rules of teams: the team ids a user is given, and when two team names are the same name.

use switchboard_server_kit::mask_pans;
use uuid::Uuid;

use super::directory::FieldError;

/// Most teams a user may belong to, as the contract states (`User.team_ids`).
pub const MAX_TEAMS_PER_USER: usize = 20;

/// Longest part of a malformed team id echoed back in the error, in characters.
const MAX_SHOWN_ID_CHARS: usize = 40;

/// A user's team ids as sent: at most [`MAX_TEAMS_PER_USER`], each a UUID. Answered
/// canonical (lowercase, hyphenated), each once, ascending. The length is checked before
/// anything else, so a list of any size is refused at once.
pub fn team_ids(field: &str, values: &[String]) -> Result<Vec<String>, FieldError> {
    if values.len() > MAX_TEAMS_PER_USER {
        return Err(FieldError::new(
            field,
            format!(
                "may name at most {MAX_TEAMS_PER_USER} teams ({} given)",
                values.len()
            ),
        ));
    }
    let mut ids = Vec::with_capacity(values.len());
    for value in values {
        let id = Uuid::parse_str(value.trim()).map_err(|_| {
            let shown: String = mask_pans(value).chars().take(MAX_SHOWN_ID_CHARS).collect();
            FieldError::new(field, format!("{shown:?} is not a team id (a UUID)"))
        })?;
        ids.push(id.to_string());
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The first of `asked` that is not among `found` (the tenant's teams among them), as the
/// error naming it: another tenant's team is as unknown as one that never existed.
pub fn all_found(field: &str, asked: &[String], found: &[String]) -> Result<(), FieldError> {
    match asked.iter().find(|id| !found.contains(id)) {
        None => Ok(()),
        Some(missing) => Err(FieldError::new(
            field,
            format!("team {missing} is not a team of the user's tenant"),
        )),
    }
}

/// What must be unique among a tenant's team names: the name without regard to case, so
/// that "Billing" and "billing" cannot be two teams a supervisor has to tell apart.
pub fn name_key(display_name: &str) -> String {
    display_name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    const B: &str = "0b8e7c6d-5a4f-4e3d-9c2b-1a0f9e8d7c6b";

    #[test]
    fn team_ids_are_canonical_unique_and_sorted() {
        let sent = vec![A.to_uppercase(), B.to_owned(), format!(" {A} ")];
        assert_eq!(
            team_ids("user.team_ids", &sent).unwrap(),
            vec![B.to_owned(), A.to_owned()]
        );
        assert_eq!(
            team_ids("user.team_ids", &[]).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn team_ids_are_bounded_before_they_are_read() {
        assert!(team_ids("t", &vec![A.to_owned(); MAX_TEAMS_PER_USER]).is_ok());
        let err = team_ids("t", &vec!["not a uuid".to_owned(); 100_000]).unwrap_err();
        assert_eq!(err.field, "t");
        assert_eq!(err.description, "may name at most 20 teams (100000 given)");
    }

    #[test]
    fn a_malformed_team_id_is_named_shortened_and_masked() {
        let err = team_ids("t", &["sales".to_owned()]).unwrap_err();
        assert_eq!(err.description, "\"sales\" is not a team id (a UUID)");
        let err = team_ids("t", &["x".repeat(10_000)]).unwrap_err();
        assert!(err.description.len() < 80, "{}", err.description);
        let err = team_ids("t", &["4111 1111 1111 1111".to_owned()]).unwrap_err();
        assert!(
            err.description.contains("4111 11** **** 1111"),
            "{}",
            err.description
        );
    }

    #[test]
    fn the_first_unknown_team_is_named() {
        let asked = vec![B.to_owned(), A.to_owned()];
        assert!(all_found("t", &asked, &[A.to_owned(), B.to_owned()]).is_ok());
        let err = all_found("t", &asked, &[B.to_owned()]).unwrap_err();
        assert_eq!(
            err.description,
            format!("team {A} is not a team of the user's tenant")
        );
        assert!(all_found("t", &[], &[]).is_ok());
    }

    #[test]
    fn team_names_are_the_same_without_regard_to_case() {
        assert_eq!(name_key("Billing"), name_key("BILLING"));
        assert_eq!(name_key("Équipe Nord"), "équipe nord");
        assert_ne!(name_key("Billing"), name_key("Billing EU"));
    }
}
