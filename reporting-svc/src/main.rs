//! The reporting-svc binary: configuration, logging, signals; the service is in the library.

use std::io::Write as _;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use reporting_svc::store::Store;
use reporting_svc::{Config, ENV_PREFIX, serve};
use switchboard_server_kit::{CommonArgs, ShutdownSignal, bind, config, init_tracing, shutdown};

/// Switchboard's reporting service: reports on conversations, by API and as CSV.
#[derive(Parser, Debug)]
#[command(name = "reporting-svc", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// What to do instead of serving.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Rebuilds every report from the event history: forgets the facts, counts and cursors
    /// in the configured database, so that reporting-svc (running or started later) folds
    /// conversation-svc's and routing-svc's logs again from their start.
    Rebuild,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = config::load(
        &Config::default(),
        cli.common.config.as_deref(),
        ENV_PREFIX,
        &cli.common.overrides(),
    )?;
    init_tracing(&config.log);
    if let Some(Command::Rebuild) = cli.command {
        let store = Store::open(&config.database_url)
            .await
            .context("cannot open the reporting database")?;
        let forgotten = store.rebuild().await.context("rebuild failed")?;
        // The operator's answer, not a log line.
        writeln!(
            std::io::stdout(),
            "reports reset ({forgotten} rollup rows forgotten); reporting-svc now \
             folds both event logs again from their start"
        )?;
        return Ok(());
    }
    let listener = bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    serve(
        config,
        listener,
        ShutdownSignal::from_future(shutdown::signal()),
    )
    .await
}
