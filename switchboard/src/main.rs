//! `switchboard`: runs the whole suite on one machine for development, and the platform
//! operator's commands against a running suite.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard contact-center engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs all four services on loopback with a demo tenant. Not for production.
    Dev(switchboard::dev::DevArgs),
    /// Platform operator commands against a running suite: tenants and their first
    /// administrators.
    Admin(switchboard::admin::AdminArgs),
    /// Benchmarks the suite on loopback: each figure against a baseline from the same run
    /// (docs/benchmarks.md).
    Bench(switchboard::bench::BenchArgs),
    /// Simulates a contact center through the gateway of a running `switchboard dev`:
    /// customers arriving, agents answering, chatting and wrapping up, live progress and a
    /// summary with the reports.
    Simulate(switchboard::simulate::SimulateArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dev(args) => switchboard::dev::run(args).await,
        Command::Admin(args) => switchboard::admin::run(args).await,
        Command::Bench(args) => switchboard::bench::run(args).await,
        Command::Simulate(args) => switchboard::simulate::run(args).await,
    }
}
