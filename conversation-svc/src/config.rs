//! conversation-svc's configuration (`[…]` keys of its TOML file, or
//! `SWITCHBOARD_CONVERSATION_*` environment variables).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_server_kit::LogConfig;
use switchboard_server_kit::idempotency::RequestLogConfig;

/// Prefix of the environment variables that override the configuration, e.g.
/// `SWITCHBOARD_CONVERSATION_ROUTING_URL` or `SWITCHBOARD_CONVERSATION_LOG__FORMAT`.
pub const ENV_PREFIX: &str = "SWITCHBOARD_CONVERSATION_";

/// Everything conversation-svc needs to run.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address of the gRPC server.
    pub listen: SocketAddr,
    /// Address of the Prometheus `/metrics` endpoint; none to serve no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// `sqlite:PATH`, `sqlite::memory:` or `postgres://…`.
    pub database_url: String,
    /// Secret shared with the gateway and the other services that signs caller
    /// identities; at least 16 bytes, or the service refuses to start.
    pub identity_secret: String,
    /// routing-svc's gRPC address.
    pub routing_url: String,
    /// The gateway's internal listener (`DirectoryInternalService`), asked whether a tenant
    /// that a user of a parent tenant names is a descendant of the user's tenant.
    pub directory_url: String,
    /// Deadline of one call to the directory, in milliseconds.
    pub directory_timeout_ms: u64,
    /// How long a tenant's ancestry, once answered by the directory, is used without asking
    /// again, in milliseconds (tenant parents rarely change); 0 asks on every call that names
    /// another tenant.
    pub tenant_ancestry_ttl_ms: u64,
    /// Logging.
    pub log: LogConfig,
    /// First delay before a failed call to routing-svc is retried, in milliseconds; also
    /// how often the outbox is checked for due calls.
    pub outbox_retry_ms: u64,
    /// Longest delay between two retries of a call to routing-svc, in milliseconds.
    pub outbox_retry_max_ms: u64,
    /// Deadline of each call to routing-svc, in milliseconds.
    pub routing_timeout_ms: u64,
    /// Most calls to routing-svc that may wait in the outbox; beyond it, requests that
    /// would add one (CreateConversation, SubmitWrapUp, …) are refused with
    /// RESOURCE_EXHAUSTED and a retry delay, so that lag stays bounded.
    pub outbox_max_pending: u64,
    /// How often the process's one change follower looks for events committed by other
    /// replicas, while any stream is open, in milliseconds (events of this process wake
    /// their streams at once; idle streams read nothing).
    pub event_poll_ms: u64,
    /// How long a server stream may stay silent before it sends a heartbeat, in
    /// milliseconds.
    pub heartbeat_ms: u64,
    /// How long an agent's queues, as routing-svc answered them, are used before being
    /// asked again, in milliseconds: a change of an agent's queues shows in what the agent
    /// sees within this time.
    pub agent_queues_fresh_ms: u64,
    /// How long answers to `request_id`s are kept and how often older ones are deleted
    /// (`[request_log]`).
    pub request_log: RequestLogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50062)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9062))),
            database_url: "sqlite://switchboard-data/conversation.db".to_owned(),
            identity_secret: String::new(),
            routing_url: "http://127.0.0.1:50061".to_owned(),
            directory_url: "http://127.0.0.1:50055".to_owned(),
            directory_timeout_ms: 5_000,
            tenant_ancestry_ttl_ms: 30_000,
            log: LogConfig::default(),
            outbox_retry_ms: 500,
            outbox_retry_max_ms: 30_000,
            routing_timeout_ms: 5_000,
            outbox_max_pending: 10_000,
            event_poll_ms: 1_000,
            heartbeat_ms: 15_000,
            agent_queues_fresh_ms: 5_000,
            request_log: RequestLogConfig::default(),
        }
    }
}

impl Config {
    pub(crate) fn outbox_retry(&self) -> Duration {
        Duration::from_millis(self.outbox_retry_ms.max(1))
    }

    pub(crate) fn outbox_retry_max(&self) -> Duration {
        Duration::from_millis(self.outbox_retry_max_ms.max(self.outbox_retry_ms).max(1))
    }

    pub(crate) fn routing_timeout(&self) -> Duration {
        Duration::from_millis(self.routing_timeout_ms.max(1))
    }

    pub(crate) fn directory_timeout(&self) -> Duration {
        Duration::from_millis(self.directory_timeout_ms.max(1))
    }

    pub(crate) fn tenant_ancestry_ttl(&self) -> Duration {
        Duration::from_millis(self.tenant_ancestry_ttl_ms)
    }

    /// How long an outbox attempt holds its commands: the routing deadline plus a margin
    /// for the writes around the call.
    pub(crate) fn outbox_lease(&self) -> Duration {
        self.routing_timeout() + Duration::from_secs(2)
    }

    pub(crate) fn event_poll(&self) -> Duration {
        Duration::from_millis(self.event_poll_ms.max(10))
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(10))
    }

    pub(crate) fn agent_queues_fresh(&self) -> Duration {
        Duration::from_millis(self.agent_queues_fresh_ms)
    }
}

/// Shows everything but the identity secret.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("database_url", &self.database_url)
            .field("identity_secret", &"<redacted>")
            .field("routing_url", &self.routing_url)
            .field("directory_url", &self.directory_url)
            .field("directory_timeout_ms", &self.directory_timeout_ms)
            .field("tenant_ancestry_ttl_ms", &self.tenant_ancestry_ttl_ms)
            .field("log", &self.log)
            .field("outbox_retry_ms", &self.outbox_retry_ms)
            .field("outbox_retry_max_ms", &self.outbox_retry_max_ms)
            .field("routing_timeout_ms", &self.routing_timeout_ms)
            .field("outbox_max_pending", &self.outbox_max_pending)
            .field("event_poll_ms", &self.event_poll_ms)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("agent_queues_fresh_ms", &self.agent_queues_fresh_ms)
            .field("request_log", &self.request_log)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:50062");
        assert_eq!(c.metrics_listen.unwrap().to_string(), "127.0.0.1:9062");
        assert_eq!(c.database_url, "sqlite://switchboard-data/conversation.db");
        assert_eq!(c.routing_url, "http://127.0.0.1:50061");
        assert_eq!(c.directory_url, "http://127.0.0.1:50055");
        assert_eq!(c.tenant_ancestry_ttl(), Duration::from_secs(30));
        assert!(c.identity_secret.is_empty());
        assert_eq!(c.outbox_max_pending, 10_000);
        assert_eq!(c.outbox_lease(), Duration::from_secs(7));
    }

    #[test]
    fn overrides_apply_by_key() {
        let c: Config = switchboard_server_kit::config::load(
            &Config::default(),
            None,
            "SWITCHBOARD_CONVERSATION_TEST_UNSET_",
            &[
                ("listen".to_owned(), "0.0.0.0:7000".to_owned()),
                ("outbox_retry_ms".to_owned(), "25".to_owned()),
                ("log.format".to_owned(), "json".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
        assert_eq!(c.outbox_retry_ms, 25);
        assert_eq!(c.log.format, switchboard_server_kit::LogFormat::Json);
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Config {
            identity_secret: "super-secret-value-1234".into(),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("super-secret"));
    }
}
