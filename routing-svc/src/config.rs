//! routing-svc configuration: defaults → TOML file → `SWITCHBOARD_ROUTING_*` → flags.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_server_kit::LogConfig;
use switchboard_server_kit::idempotency::RequestLogConfig;

/// Prefix of the environment variables that configure routing-svc
/// (e.g. `SWITCHBOARD_ROUTING_DATABASE_URL`, `SWITCHBOARD_ROUTING_LOG__FORMAT`).
pub const ENV_PREFIX: &str = "SWITCHBOARD_ROUTING_";

/// Everything routing-svc reads at start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus `/metrics` address; `None` serves no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// `sqlite://PATH`, `sqlite::memory:` or `postgres://…`.
    pub database_url: String,
    /// Secret shared with the gateway and the other services that signs caller
    /// identities; at least 16 bytes.
    pub identity_secret: String,
    /// conversation-svc's internal API, called after an offer is accepted.
    pub conversation_url: String,
    /// The gateway's internal listener (`DirectoryInternalService`), asked who a user is
    /// before the user gets a routing profile.
    pub directory_url: String,
    /// Deadline of one call to the directory, in milliseconds.
    pub directory_timeout_ms: u64,
    /// Logging.
    pub log: LogConfig,
    /// How often the matcher looks for offers past their deadline, in milliseconds.
    pub matcher_interval_ms: u64,
    /// How often the matcher routes the whole backlog even when nothing woke it (changes
    /// made by another replica), in milliseconds.
    pub rematch_interval_ms: u64,
    /// How often the process's one change follower looks for events committed by another
    /// replica, while any stream is open, in milliseconds (events of this process wake
    /// their streams at once; idle streams read nothing).
    pub event_poll_interval_ms: u64,
    /// First retry delay of an assignment conversation-svc has not confirmed, in
    /// milliseconds; doubles on each failure.
    pub outbox_retry_initial_ms: u64,
    /// Longest retry delay of an unconfirmed assignment, in milliseconds.
    pub outbox_retry_max_ms: u64,
    /// Deadline of one call to conversation-svc, in milliseconds.
    pub conversation_timeout_ms: u64,
    /// Quiet time after which a server stream (StreamOffers, StreamAgentStates, Subscribe)
    /// sends a heartbeat, in milliseconds; the contract promises about 15 seconds.
    pub heartbeat_interval_ms: u64,
    /// How often a StreamAgentStates filtered by team asks the directory again who is in
    /// the team, in milliseconds (one call per such stream per interval).
    pub team_refresh_interval_ms: u64,
    /// How long answers to `request_id`s are kept and how often older ones are deleted
    /// (`[request_log]`).
    pub request_log: RequestLogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50061)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9061))),
            database_url: "sqlite://switchboard-data/routing.db".to_owned(),
            identity_secret: String::new(),
            conversation_url: "http://127.0.0.1:50062".to_owned(),
            directory_url: "http://127.0.0.1:50055".to_owned(),
            directory_timeout_ms: 5_000,
            log: LogConfig::default(),
            matcher_interval_ms: 200,
            rematch_interval_ms: 2_000,
            event_poll_interval_ms: 500,
            outbox_retry_initial_ms: 500,
            outbox_retry_max_ms: 30_000,
            conversation_timeout_ms: 5_000,
            heartbeat_interval_ms: 15_000,
            team_refresh_interval_ms: 5_000,
            request_log: RequestLogConfig::default(),
        }
    }
}

/// The tuning knobs as durations, each at least one millisecond.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timings {
    pub matcher_interval: Duration,
    pub rematch_interval: Duration,
    pub event_poll_interval: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub conversation_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub team_refresh_interval: Duration,
}

impl Timings {
    pub(crate) fn from_config(config: &Config) -> Timings {
        let ms = |value: u64| Duration::from_millis(value.max(1));
        Timings {
            matcher_interval: ms(config.matcher_interval_ms),
            rematch_interval: ms(config.rematch_interval_ms),
            event_poll_interval: ms(config.event_poll_interval_ms),
            retry_initial: ms(config.outbox_retry_initial_ms),
            retry_max: ms(config
                .outbox_retry_max_ms
                .max(config.outbox_retry_initial_ms)),
            conversation_timeout: ms(config.conversation_timeout_ms),
            heartbeat_interval: ms(config.heartbeat_interval_ms),
            team_refresh_interval: ms(config.team_refresh_interval_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ports_and_paths() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:50061");
        assert_eq!(config.metrics_listen.unwrap().to_string(), "127.0.0.1:9061");
        assert_eq!(config.database_url, "sqlite://switchboard-data/routing.db");
        assert_eq!(config.conversation_url, "http://127.0.0.1:50062");
        assert_eq!(config.directory_url, "http://127.0.0.1:50055");
        assert!(config.identity_secret.is_empty());
        assert_eq!(config.matcher_interval_ms, 200);
        assert_eq!(config.heartbeat_interval_ms, 15_000);
    }

    #[test]
    fn loads_overrides_through_the_shared_loader() {
        let config: Config = switchboard_server_kit::config::load(
            &Config::default(),
            None,
            "SWITCHBOARD_ROUTING_TEST_UNSET_",
            &[
                ("listen".to_owned(), "0.0.0.0:7000".to_owned()),
                ("metrics_listen".to_owned(), "127.0.0.1:7001".to_owned()),
                ("matcher_interval_ms".to_owned(), "50".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:7000");
        assert_eq!(config.metrics_listen.unwrap().port(), 7001);
        assert_eq!(config.matcher_interval_ms, 50);
        assert_eq!(config.database_url, Config::default().database_url);
    }
}
