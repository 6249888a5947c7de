//! Logging setup for a service binary.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global `tracing` subscriber: human or JSON lines on stderr, filtered by
/// `RUST_LOG` when set, else by `log.filter`.
///
/// Calling it again (tests, several services in one process) keeps the first subscriber.
pub fn init_tracing(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // An error only means a subscriber is already installed, which is fine.
    let _ = match log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_init_does_not_panic() {
        init_tracing(&LogConfig::default());
        init_tracing(&LogConfig {
            format: LogFormat::Json,
            filter: "not a [valid filter".to_owned(),
        });
        assert!(tracing::dispatcher::has_been_set());
    }
}
