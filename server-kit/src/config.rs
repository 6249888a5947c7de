//! Layered configuration: defaults → TOML file → environment → command-line flags.
//!
//! Each later layer overrides the earlier ones key by key, so an operator can keep a
//! file for the stable settings and override one value per deployment or per run.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named on the command line does not exist.
    #[error("config file {} not found", .0.display())]
    MissingFile(PathBuf),
    /// A layer could not be read or the merged result does not fit the config type.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
}

/// Loads a configuration by merging, from lowest to highest precedence: `defaults`, the
/// TOML `file` (an explicitly given file must exist), environment variables starting with
/// `env_prefix` (nested keys separated by `__`, e.g. `SWITCHBOARD_ROUTING_LOG__FORMAT`
/// for the prefix `SWITCHBOARD_ROUTING_`; a missing trailing `_` is added), then
/// `overrides` given as dotted keys (`log.format`, `json`).
///
/// Values from the environment and from overrides are parsed the same way: `true`, `42`
/// or `[a, b]` become booleans, numbers or arrays, anything else stays a string.
pub fn load<T: DeserializeOwned + Serialize>(
    defaults: &T,
    file: Option<&Path>,
    env_prefix: &str,
    overrides: &[(String, String)],
) -> Result<T, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::MissingFile(path.to_path_buf()));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let env_prefix = if env_prefix.is_empty() || env_prefix.ends_with('_') {
        env_prefix.to_owned()
    } else {
        format!("{env_prefix}_")
    };
    figment = figment.merge(Env::prefixed(&env_prefix).split("__"));
    for (key, value) in overrides {
        let value: Value = value.parse().unwrap_or_else(|never| match never {});
        figment = figment.merge(Serialized::default(key, value));
    }
    figment
        .extract()
        .map_err(|err| ConfigError::Invalid(Box::new(err)))
}

/// Output format of the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging settings shared by every service (`[log]` in the config file).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct LogConfig {
    /// Human or JSON output.
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `info,sqlx=warn`; `RUST_LOG` wins.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            filter: "info".to_owned(),
        }
    }
}

/// Command-line flags every service binary accepts; flatten it into the binary's parser.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct CommonArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address the gRPC server listens on (e.g. 0.0.0.0:50051).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address the Prometheus metrics endpoint listens on.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Database URL: `sqlite:PATH`, `sqlite::memory:` or `postgres://…`.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Log output format.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter directive (overridden by RUST_LOG).
    #[arg(long, value_name = "FILTER")]
    pub log_filter: Option<String>,
    /// Set any configuration key, e.g. `--set log.format=json` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
}

impl CommonArgs {
    /// The flags as dotted-key overrides for [`load`]; `--set` pairs come last and win.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                out.push((key.to_owned(), value));
            }
        };
        push("listen", self.listen.clone());
        push("metrics_listen", self.metrics_listen.clone());
        push("database_url", self.database_url.clone());
        push(
            "log.format",
            self.log_format.map(|format| match format {
                LogFormat::Human => "human".to_owned(),
                LogFormat::Json => "json".to_owned(),
            }),
        );
        push("log.filter", self.log_filter.clone());
        out.extend(self.set.iter().cloned());
        out
    }
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got `{raw}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Write;
    use std::process::Command;

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[serde(default)]
    struct TestConfig {
        listen: String,
        metrics_listen: String,
        database_url: String,
        max_items: u32,
        log: LogConfig,
    }

    impl Default for TestConfig {
        fn default() -> Self {
            TestConfig {
                listen: "127.0.0.1:1".to_owned(),
                metrics_listen: "127.0.0.1:2".to_owned(),
                database_url: "sqlite:default.db".to_owned(),
                max_items: 1,
                log: LogConfig::default(),
            }
        }
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    const CHILD_MARKER: &str = "SWITCHBOARD_KIT_CONFIG_TEST_CHILD";

    /// Re-runs one test of this binary in a child process with extra environment
    /// variables: the workspace forbids `unsafe`, and `set_var` is unsafe in edition 2024.
    fn rerun_with_env(test_name: &str, vars: &[(&str, &str)]) {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test_name, "--test-threads=1", "--nocapture"])
            .env(CHILD_MARKER, "1")
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "child run of {test_name} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn write_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("config.toml");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
        path
    }

    #[test]
    fn defaults_apply_when_nothing_else_is_given() {
        let loaded: TestConfig =
            load(&TestConfig::default(), None, "SWITCHBOARD_KIT_T0_", &[]).unwrap();
        assert_eq!(loaded, TestConfig::default());
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "max_items = 5\n[log]\nformat = \"json\"\n");
        let loaded: TestConfig = load(
            &TestConfig::default(),
            Some(&path),
            "SWITCHBOARD_KIT_T1_",
            &[],
        )
        .unwrap();
        assert_eq!(loaded.max_items, 5);
        assert_eq!(loaded.log.format, LogFormat::Json);
        assert_eq!(loaded.log.filter, "info");
        assert_eq!(loaded.listen, "127.0.0.1:1");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = load(
            &TestConfig::default(),
            Some(&missing),
            "SWITCHBOARD_KIT_T2_",
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(path) if path == missing));
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = load(
            &TestConfig::default(),
            None,
            "SWITCHBOARD_KIT_T3_",
            &[("max_items".to_owned(), "lots".to_owned())],
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
    }

    #[test]
    fn precedence_is_default_then_file_then_env_then_flags() {
        if std::env::var_os(CHILD_MARKER).is_none() {
            rerun_with_env(
                "config::tests::precedence_is_default_then_file_then_env_then_flags",
                &[
                    ("SWITCHBOARD_KIT_T4_MAX_ITEMS", "7"),
                    ("SWITCHBOARD_KIT_T4_DATABASE_URL", "sqlite:env.db"),
                    ("SWITCHBOARD_KIT_T4_LOG__FORMAT", "json"),
                    ("SWITCHBOARD_KIT_T4_LOG__FILTER", "debug"),
                ],
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(
            dir.path(),
            "listen = \"127.0.0.1:10\"\nmetrics_listen = \"127.0.0.1:20\"\n\
             database_url = \"sqlite:file.db\"\nmax_items = 3\n",
        );
        let cli = Cli::parse_from([
            "svc",
            "--config",
            path.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:30",
            "--log-format",
            "human",
            "--set",
            "max_items=9",
        ]);
        let loaded: TestConfig = load(
            &TestConfig::default(),
            cli.common.config.as_deref(),
            // Without the trailing `_`, which `load` adds.
            "SWITCHBOARD_KIT_T4",
            &cli.common.overrides(),
        )
        .unwrap();
        // Only the file sets it.
        assert_eq!(loaded.listen, "127.0.0.1:10");
        // File, then flag.
        assert_eq!(loaded.metrics_listen, "127.0.0.1:30");
        // File, then environment.
        assert_eq!(loaded.database_url, "sqlite:env.db");
        // File, environment, then `--set`.
        assert_eq!(loaded.max_items, 9);
        // Environment, then flag.
        assert_eq!(loaded.log.format, LogFormat::Human);
        // Only the environment sets it, through a nested `__` key.
        assert_eq!(loaded.log.filter, "debug");
    }

    #[test]
    fn overrides_map_flags_to_keys() {
        let cli = Cli::parse_from([
            "svc",
            "--listen",
            "0.0.0.0:50051",
            "--metrics-listen",
            "0.0.0.0:9090",
            "--database-url",
            "postgres://db/x",
            "--log-format",
            "json",
            "--log-filter",
            "warn,sqlx=off",
            "--set",
            "a.b=c=d",
        ]);
        assert_eq!(
            cli.common.overrides(),
            vec![
                ("listen".to_owned(), "0.0.0.0:50051".to_owned()),
                ("metrics_listen".to_owned(), "0.0.0.0:9090".to_owned()),
                ("database_url".to_owned(), "postgres://db/x".to_owned()),
                ("log.format".to_owned(), "json".to_owned()),
                ("log.filter".to_owned(), "warn,sqlx=off".to_owned()),
                ("a.b".to_owned(), "c=d".to_owned()),
            ]
        );
        let loaded: TestConfig = load(
            &TestConfig::default(),
            None,
            "SWITCHBOARD_KIT_T5_",
            &cli.common.overrides()[..5],
        )
        .unwrap();
        assert_eq!(loaded.log.filter, "warn,sqlx=off");
        assert_eq!(loaded.database_url, "postgres://db/x");
        // Values that look like arrays or numbers stay strings when they do not parse whole.
        let loaded: TestConfig = load(
            &TestConfig::default(),
            None,
            "SWITCHBOARD_KIT_T5_",
            &[("listen".to_owned(), "[::]:50051".to_owned())],
        )
        .unwrap();
        assert_eq!(loaded.listen, "[::]:50051");
        assert!(Cli::try_parse_from(["svc", "--set", "novalue"]).is_err());
    }
}
