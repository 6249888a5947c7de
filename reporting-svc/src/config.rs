//! reporting-svc's configuration: defaults, then a TOML file, then `SWITCHBOARD_REPORTING_*`
//! environment variables, then command-line flags.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_server_kit::LogConfig;

/// Prefix of the environment variables that override the configuration, e.g.
/// `SWITCHBOARD_REPORTING_DATABASE_URL` or `SWITCHBOARD_REPORTING_LOG__FORMAT`.
pub const ENV_PREFIX: &str = "SWITCHBOARD_REPORTING_";

/// The most rows a CSV export may have (product rule: at most 1,000,000).
pub const MAX_EXPORT_ROWS: u64 = 1_000_000;

/// Settings of reporting-svc.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Address of the Prometheus `/metrics` endpoint; none to disable it.
    pub metrics_listen: Option<SocketAddr>,
    /// `sqlite://PATH`, `sqlite::memory:` or `postgres://…`.
    pub database_url: String,
    /// Secret shared with the gateway and the other services to sign and verify caller
    /// identities; at least 16 bytes, or the service refuses to start.
    pub identity_secret: String,
    /// conversation-svc's gRPC address, whose event log feeds the reports.
    pub conversation_url: String,
    /// routing-svc's gRPC address, whose event log feeds the queue and agent reports.
    pub routing_url: String,
    /// The gateway's internal listener (`DirectoryInternalService`), asked who is in a team
    /// and whether a tenant is a descendant of the caller's when a report filter names them.
    pub directory_url: String,
    /// Deadline of one call to the directory, in milliseconds.
    pub directory_timeout_ms: u64,
    /// Delay before the first reconnection to the event log after its stream ends or
    /// fails, in milliseconds; doubled after each failed attempt.
    pub reconnect_initial_ms: u64,
    /// Longest delay between reconnections to the event log, in milliseconds.
    pub reconnect_max_ms: u64,
    /// Most data rows a CSV export may have; more is refused with RESOURCE_EXHAUSTED.
    /// Capped at 1,000,000.
    pub export_max_rows: u64,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50063)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9063))),
            database_url: "sqlite://switchboard-data/reporting.db".to_owned(),
            identity_secret: String::new(),
            conversation_url: "http://127.0.0.1:50062".to_owned(),
            routing_url: "http://127.0.0.1:50061".to_owned(),
            directory_url: "http://127.0.0.1:50055".to_owned(),
            directory_timeout_ms: 5_000,
            reconnect_initial_ms: 200,
            reconnect_max_ms: 30_000,
            export_max_rows: MAX_EXPORT_ROWS,
            log: LogConfig::default(),
        }
    }
}

impl Config {
    /// The reconnection backoff of the event consumer: initial and longest delay.
    pub fn reconnect_backoff(&self) -> (Duration, Duration) {
        let initial = Duration::from_millis(self.reconnect_initial_ms.max(1));
        let max = Duration::from_millis(self.reconnect_max_ms).max(initial);
        (initial, max)
    }

    /// The deadline of one call to the directory.
    pub fn directory_timeout(&self) -> Duration {
        Duration::from_millis(self.directory_timeout_ms.max(1))
    }

    /// The export row limit in force.
    pub fn export_limit(&self) -> u64 {
        self.export_max_rows.min(MAX_EXPORT_ROWS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_flags_override() {
        let loaded: Config = switchboard_server_kit::config::load(
            &Config::default(),
            None,
            "SWITCHBOARD_REPORTING_TEST_UNSET_",
            &[
                ("listen".to_owned(), "0.0.0.0:7000".to_owned()),
                ("metrics_listen".to_owned(), "127.0.0.1:7001".to_owned()),
                ("export_max_rows".to_owned(), "5".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(loaded.listen, SocketAddr::from(([0, 0, 0, 0], 7000)));
        assert_eq!(
            loaded.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 7001)))
        );
        assert_eq!(loaded.export_limit(), 5);
        assert_eq!(loaded.database_url, Config::default().database_url);
        assert_eq!(loaded.conversation_url, "http://127.0.0.1:50062");
        assert_eq!(loaded.directory_url, "http://127.0.0.1:50055");
    }

    #[test]
    fn limits_are_clamped() {
        let config = Config {
            reconnect_initial_ms: 0,
            reconnect_max_ms: 0,
            export_max_rows: 5_000_000,
            ..Config::default()
        };
        assert_eq!(
            config.reconnect_backoff(),
            (Duration::from_millis(1), Duration::from_millis(1))
        );
        assert_eq!(config.export_limit(), MAX_EXPORT_ROWS);
    }
}
