//! The conversation-svc binary: configuration, logging, signals, then [`conversation_svc::serve`].

use clap::Parser;
use switchboard_server_kit::config::{CommonArgs, load};
use switchboard_server_kit::{ShutdownSignal, bind, init_tracing, shutdown};

/// Conversations, messages, wrap-up and the conversation event log of Switchboard.
#[derive(Parser)]
#[command(name = "conversation-svc", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = load(
        &conversation_svc::Config::default(),
        cli.common.config.as_deref(),
        conversation_svc::ENV_PREFIX,
        &cli.common.overrides(),
    )?;
    init_tracing(&config.log);
    let listener = bind(config.listen).await?;
    tracing::info!(listen = %config.listen, "conversation-svc starting");
    conversation_svc::serve(
        config,
        listener,
        ShutdownSignal::from_future(shutdown::signal()),
    )
    .await
}
