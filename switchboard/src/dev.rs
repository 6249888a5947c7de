//! `switchboard dev`: the suite on loopback with SQLite and a demo tenant, for newcomers and
//! client authors. Not for production: it prints secrets and mints long-lived tokens.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use switchboard_server_kit::config::{LogConfig, LogFormat};
use switchboard_server_kit::{shutdown, telemetry};

use crate::seed::{self, DevCredentials, DevSecrets};
use crate::suite::{self, Storage, SuiteOptions};

/// Options of `switchboard dev`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Directory for the SQLite databases and the credentials file.
    #[arg(long, default_value = "switchboard-data")]
    pub data_dir: PathBuf,
    /// Keep no data: databases live in memory (the credentials file is still written).
    #[arg(long)]
    pub in_memory: bool,
    /// The gateway's address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Serve Prometheus metrics of each service on a free loopback port.
    #[arg(long)]
    pub metrics: bool,
    /// Log format: human or json.
    #[arg(long, default_value = "human")]
    pub log_format: String,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG wins when set.
    #[arg(long, default_value = "info,sqlx=warn,h2=warn,tower=warn,hyper=warn")]
    pub log_filter: String,
}

/// Runs the dev stack until SIGINT or SIGTERM.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let format = match args.log_format.as_str() {
        "json" => LogFormat::Json,
        "human" => LogFormat::Human,
        other => anyhow::bail!("--log-format must be human or json, not {other:?}"),
    };
    telemetry::init_tracing(&LogConfig {
        format,
        filter: args.log_filter.clone(),
    });
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let (storage, secrets) = if args.in_memory {
        (Storage::InMemory, DevSecrets::generate())
    } else {
        (
            Storage::Directory(args.data_dir.clone()),
            load_or_create_secrets(&args.data_dir)?,
        )
    };
    let running = suite::start(SuiteOptions {
        storage,
        gateway_listen: args.listen,
        identity_secret: secrets.identity_secret.clone(),
        jwt_secret: secrets.jwt_secret.clone(),
        operators: secrets.operators(),
        metrics: args.metrics,
    })
    .await?;
    let gateway_db = running
        .database_urls
        .iter()
        .find(|(name, _)| *name == "gateway")
        .map(|(_, url)| url.clone())
        .unwrap_or_default();
    let credentials = match seed::seed(&gateway_db, running.addresses.gateway, &secrets).await {
        Ok(credentials) => credentials,
        Err(err) => {
            let _ = running.stop().await;
            return Err(err.context("creating the demo tenant"));
        }
    };
    let credentials_path = write_credentials(&args.data_dir, &credentials)?;
    print_banner(&credentials, &credentials_path, &running.addresses)?;

    let signal = running.shutdown_signal();
    tokio::select! {
        () = shutdown::signal() => tracing::info!("shutting down"),
        () = signal.wait() => tracing::warn!("a service stopped; shutting down the others"),
    }
    running.stop().await
}

fn load_or_create_secrets(dir: &Path) -> anyhow::Result<DevSecrets> {
    let path = dir.join("dev-secrets.json");
    if path.exists() {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut secrets: DevSecrets = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid; delete it to start over", path.display()))?;
        if secrets.operator_key.is_empty() {
            // Written before operators existed: add one and keep it from now on.
            secrets.operator_key = gateway::generate_operator_key();
            write_private(&path, &serde_json::to_vec_pretty(&secrets)?)?;
        }
        return Ok(secrets);
    }
    let secrets = DevSecrets::generate();
    write_private(&path, &serde_json::to_vec_pretty(&secrets)?)?;
    Ok(secrets)
}

/// Writes `dev-credentials.json` and `dev.env` into `dir`, readable by their owner only;
/// returns the path of the first.
fn write_credentials(dir: &Path, credentials: &DevCredentials) -> anyhow::Result<PathBuf> {
    let path = dir.join("dev-credentials.json");
    write_private(&path, &serde_json::to_vec_pretty(credentials)?)?;
    write_private(&dir.join("dev.env"), shell_env(credentials).as_bytes())?;
    Ok(path)
}

/// Writes a file only its owner can read: it holds credentials.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // `mode` applies only to a new file; one left by an older run keeps its own otherwise.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// The credentials as shell variables, so that a newcomer can `source` them and paste the
/// README's grpcurl commands as they are.
fn shell_env(credentials: &DevCredentials) -> String {
    let mut env = String::from("# Written by `switchboard dev`. Not for production.\n");
    env.push_str(&format!("export GATEWAY='{}'\n", credentials.gateway));
    env.push_str(&format!("export TENANT_ID='{}'\n", credentials.tenant_id));
    env.push_str(&format!("export QUEUE_ID='{}'\n", credentials.queue_id));
    if let Some(reason) = credentials.wrap_up_reason_ids.first() {
        env.push_str(&format!("export WRAP_UP_REASON_ID='{reason}'\n"));
    }
    for user in &credentials.users {
        let name = user.handle.to_uppercase();
        env.push_str(&format!("export {name}_ID='{}'\n", user.id));
        env.push_str(&format!("export {name}_TOKEN='{}'\n", user.token));
    }
    env.push_str(&format!(
        "export BOT_API_KEY='{}'\n",
        credentials.bot.api_key
    ));
    env.push_str("# Platform operator (switchboard admin, PlatformService). NOT FOR PRODUCTION.\n");
    env.push_str(&format!(
        "export SWITCHBOARD_OPERATOR_KEY='{}'\n",
        credentials.operator.operator_key
    ));
    env.push_str(&format!(
        "export SWITCHBOARD_ADMIN_GATEWAY='{}'\n",
        credentials.gateway
    ));
    env.push_str("# A fresh request id for each mutation.\n");
    env.push_str("rid() { python3 -c 'import uuid; print(uuid.uuid4())'; }\n");
    env
}

fn print_banner(
    credentials: &DevCredentials,
    path: &Path,
    addresses: &suite::Addresses,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let rule = "=".repeat(78);
    writeln!(out, "{rule}")?;
    writeln!(out, "  SWITCHBOARD DEV STACK - NOT FOR PRODUCTION")?;
    writeln!(
        out,
        "  Demo data, printed secrets and long-lived tokens. Never expose it."
    )?;
    writeln!(out, "{rule}")?;
    writeln!(out, "gateway (plaintext gRPC): {}", credentials.gateway)?;
    writeln!(
        out,
        "  try: grpcurl -plaintext {} list",
        credentials.gateway
    )?;
    writeln!(
        out,
        "services: routing-svc {}, conversation-svc {}, reporting-svc {}, gateway (internal) {}",
        addresses.routing, addresses.conversation, addresses.reporting, addresses.gateway_internal
    )?;
    for (name, addr) in &addresses.metrics {
        writeln!(out, "metrics: {name} http://{addr}/metrics")?;
    }
    writeln!(out, "tenant:   {}", credentials.tenant_id)?;
    writeln!(out, "program:  {}", credentials.program_id)?;
    writeln!(out, "queue:    {} (web chat)", credentials.queue_id)?;
    writeln!(
        out,
        "wrap-up reasons: {}",
        credentials.wrap_up_reason_ids.join(", ")
    )?;
    for user in &credentials.users {
        writeln!(
            out,
            "{:<11} {} <{}> roles={} id={}",
            user.handle,
            user.display_name,
            user.email,
            user.roles.join(","),
            user.id
        )?;
        writeln!(out, "            authorization: Bearer {}", user.token)?;
    }
    writeln!(
        out,
        "bot         {} id={}",
        credentials.bot.display_name, credentials.bot.id
    )?;
    writeln!(out, "            x-api-key: {}", credentials.bot.api_key)?;
    writeln!(
        out,
        "operator    {} (platform operator, NOT FOR PRODUCTION; PlatformService only)",
        credentials.operator.name
    )?;
    writeln!(
        out,
        "            x-api-key: {}",
        credentials.operator.operator_key
    )?;
    writeln!(out, "credentials written to {}", path.display())?;
    if let Some(dir) = path.parent() {
        writeln!(
            out,
            "shell variables: source {}",
            dir.join("dev.env").display()
        )?;
    }
    writeln!(out, "{rule}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("switchboard-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn credential_files_are_readable_by_their_owner_only() {
        let dir = scratch_dir("dev-credentials");
        // A world-readable dev.env left by an older run is restricted too.
        std::fs::write(dir.join("dev.env"), "stale").unwrap();
        std::fs::set_permissions(dir.join("dev.env"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let credentials: DevCredentials = serde_json::from_value(serde_json::json!({
            "gateway": "127.0.0.1:8080",
            "tenant_id": "t-1",
            "program_id": "p-1",
            "queue_id": "q-1",
            "capacity_profile_id": "c-1",
            "wrap_up_reason_ids": ["r-1"],
            "users": [],
            "bot": { "id": "k-1", "display_name": "Bot", "api_key": "secret-key" },
            "operator": { "name": "dev", "operator_key": "op-secret" },
        }))
        .unwrap();

        let path = write_credentials(&dir, &credentials).unwrap();
        assert_eq!(path, dir.join("dev-credentials.json"));
        for file in ["dev-credentials.json", "dev.env"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        let env = std::fs::read_to_string(dir.join("dev.env")).unwrap();
        assert!(env.contains("export TENANT_ID='t-1'"), "{env}");
        let written: DevCredentials =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written.operator.operator_key, "op-secret");

        load_or_create_secrets(&dir).unwrap();
        assert_eq!(mode(&dir.join("dev-secrets.json")), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
