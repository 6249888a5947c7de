//! The reporting-svc binary: configuration, logging, signals; the service is in the library.

use anyhow::Context as _;
use clap::Parser;
use reporting_svc::{Config, ENV_PREFIX, serve};
use switchboard_server_kit::{CommonArgs, ShutdownSignal, bind, config, init_tracing, shutdown};

/// Switchboard's reporting service: reports on conversations, by API and as CSV.
#[derive(Parser, Debug)]
#[command(name = "reporting-svc", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
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
