//! The routing-svc binary: configuration, logging, signals; everything else is in the
//! library.

use clap::Parser;
use routing_svc::{Config, ENV_PREFIX, serve};
use switchboard_server_kit::config::{CommonArgs, load};
use switchboard_server_kit::server::{ShutdownSignal, bind};
use switchboard_server_kit::{init_tracing, shutdown};

/// Switchboard routing service: queues, presence, capacity and offers.
#[derive(Parser, Debug)]
#[command(name = "routing-svc", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: Config = load(
        &Config::default(),
        args.common.config.as_deref(),
        ENV_PREFIX,
        &args.common.overrides(),
    )?;
    init_tracing(&config.log);
    let listener = bind(config.listen).await?;
    tracing::info!(listen = %config.listen, "routing-svc starting");
    serve(
        config,
        listener,
        ShutdownSignal::from_future(shutdown::signal()),
    )
    .await
}
