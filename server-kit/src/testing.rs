//! Test support: where the tests find PostgreSQL, and when they may go without it.
//!
//! A test that needs PostgreSQL asks [`postgres_url`] for the server. When
//! `SWITCHBOARD_TEST_POSTGRES_URL` is unset, what happens depends on the run:
//!
//! - `SWITCHBOARD_TEST_SKIP` lists `postgres` (a comma separated list of opt-outs, also
//!   read by `scripts/test`): the run opted out, so the test skips that part, saying so;
//! - otherwise, under `CI=true` or `SWITCHBOARD_TEST_REQUIRE_POSTGRES=1` (which
//!   `scripts/test` sets for its tests step): the test panics, saying how to provide a
//!   server or how to opt out, so that a missing database never looks like a pass;
//! - otherwise (a developer's plain `cargo test`): the test skips that part with a note.
//!
//! [`not_available`] applies the same rule to anything else a test cannot go without,
//! such as a test server that accepts TLS (opt-out `postgres-tls`).

/// The variable holding the URL of the test server, whose user must be able to
/// `CREATE DATABASE` (the tests make a fresh database each).
pub const POSTGRES_URL_VAR: &str = "SWITCHBOARD_TEST_POSTGRES_URL";

/// The URL of the test PostgreSQL server, or `None` when `test` may go without one (see
/// the module documentation); panics when the run requires PostgreSQL and has none.
/// An empty `test` names the current test (its thread's name).
#[track_caller]
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            not_available(
                test,
                "postgres",
                &format!("{POSTGRES_URL_VAR} is not set"),
                &format!(
                    "run scripts/test, which starts a throwaway PostgreSQL server, or set \
                     {POSTGRES_URL_VAR}=postgres://USER@HOST:PORT/DB (a user that can CREATE \
                     DATABASE)"
                ),
            );
            None
        }
    }
}

/// `test` cannot run its `opt_out` part because of `reason`: returns (the caller then
/// skips that part) when the run opted out or does not require PostgreSQL, and panics
/// with `how_to_provide` and the opt-out otherwise.
#[track_caller]
pub fn not_available(test: &str, opt_out: &str, reason: &str, how_to_provide: &str) {
    let current = std::thread::current();
    let test = match test {
        "" => current.name().unwrap_or("this test"),
        name => name,
    };
    let skip = std::env::var("SWITCHBOARD_TEST_SKIP").unwrap_or_default();
    if opted_out(&skip, opt_out) {
        eprintln!("SKIPPED ({opt_out}): {test}: {reason}; opted out: SWITCHBOARD_TEST_SKIP={skip}");
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let required = std::env::var("SWITCHBOARD_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    if ci || required {
        let why = if ci {
            "CI=true"
        } else {
            "SWITCHBOARD_TEST_REQUIRE_POSTGRES=1"
        };
        panic!(
            "{test}: {reason}, and this run requires PostgreSQL ({why}).\n\
             To provide it: {how_to_provide}.\n\
             To skip it explicitly instead: SWITCHBOARD_TEST_SKIP={opt_out} (scripts/test \
             then reports it as skipped)."
        );
    }
    eprintln!(
        "NOT RUN ({opt_out}): {test}: {reason}, so it passes without that part. \
         To run it: {how_to_provide}."
    );
}

/// Whether the comma separated `list` holds `opt_out`.
fn opted_out(list: &str, opt_out: &str) -> bool {
    list.split(',').any(|item| item.trim() == opt_out)
}

#[cfg(test)]
mod tests {
    use super::opted_out;

    #[test]
    fn opt_outs_are_listed_by_name() {
        assert!(opted_out("postgres", "postgres"));
        assert!(opted_out("clippy, postgres", "postgres"));
        assert!(opted_out("k8s,postgres-tls", "postgres-tls"));
        assert!(!opted_out("postgres", "postgres-tls"));
        assert!(!opted_out("postgres-tls", "postgres"));
        assert!(!opted_out("", "postgres"));
        assert!(!opted_out("postgresql,k8s", "postgres"));
    }
}
