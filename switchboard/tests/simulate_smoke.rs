//! `switchboard simulate` against the dev stack started in this process: customers are
//! created, offered, accepted, served and wrapped up, and the reports count them. A smoke
//! test of behaviour, never of speed: nothing here asserts how fast anything is.

use std::time::Duration;

use clap::Parser;
use switchboard::seed::{self, DevSecrets};
use switchboard::simulate::{self, SimulateArgs};
use switchboard::suite::{self, Storage, SuiteOptions};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_simulation_serves_customers_end_to_end_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = DevSecrets::generate();
    let running = suite::start(SuiteOptions {
        storage: Storage::Directory(dir.path().join("data")),
        gateway_listen: ([127, 0, 0, 1], 0).into(),
        identity_secret: secrets.identity_secret.clone(),
        jwt_secret: secrets.jwt_secret.clone(),
        operators: secrets.operators(),
        metrics: false,
    })
    .await
    .expect("starting the suite");
    let gateway_db = running
        .database_urls
        .iter()
        .find(|(name, _)| *name == "gateway")
        .map(|(_, url)| url.clone())
        .unwrap();
    let credentials = seed::seed(&gateway_db, running.addresses.gateway, &secrets)
        .await
        .expect("seeding the demo tenant");
    // The file `switchboard dev` writes, read the way the command reads it.
    let credentials_path = dir.path().join("dev-credentials.json");
    std::fs::write(
        &credentials_path,
        serde_json::to_vec_pretty(&credentials).unwrap(),
    )
    .unwrap();

    let cli = Cli::parse_from([
        "simulate",
        "--credentials",
        credentials_path.to_str().unwrap(),
        "--rate",
        "3",
        "--duration",
        "2s",
        "--seed",
        "7",
        // Quick agents, so the run is short; rejects still happen, misses would wait for the
        // demo queue's two-minute offer timeout.
        "--pace",
        "0.02",
        "--reject",
        "0.1",
        "--miss",
        "0",
        "--drain",
        "60s",
    ]);
    // The simulation bounds itself (arrivals, drain, the reports' catch-up); this only stops
    // a hung run from hanging the test command.
    let summary = tokio::time::timeout(Duration::from_secs(180), simulate::simulate(&cli.args))
        .await
        .expect("the simulation ends on its own")
        .expect("the simulation runs");
    running.stop().await.expect("stopping the suite");

    let totals = &summary.totals;
    assert_eq!(summary.seed, 7);
    assert_eq!(
        summary.errors, 0,
        "unexpected errors, the first: {:?}",
        summary.first_error
    );
    assert!(totals.created > 0, "no conversation created: {summary:#?}");
    assert!(
        totals.offered >= 1,
        "no offer reached an agent: {summary:#?}"
    );
    assert!(totals.accepted >= 1, "no offer accepted: {summary:#?}");
    assert!(
        totals.closed >= 1,
        "no conversation closed with wrap-up: {summary:#?}"
    );
    assert!(
        totals.messages >= 2,
        "agents and customers did not chat: {summary:#?}"
    );
    // Every conversation of the run ended closed with wrap-up, none was left behind.
    assert_eq!(summary.left_open, 0, "{summary:#?}");
    assert_eq!(
        totals.closed + summary.closed_at_end,
        totals.created,
        "{summary:#?}"
    );
    // What the reports now show counts the run.
    assert!(summary.reports.caught_up, "{:#?}", summary.reports);
    assert!(
        summary.reports.created.unwrap_or(0) >= totals.created as i64,
        "{:#?}",
        summary.reports
    );
    assert!(
        summary
            .reports
            .close_time
            .iter()
            .map(|r| r.closed)
            .sum::<i64>()
            >= 1,
        "the close-time report counts no conversation: {:#?}",
        summary.reports
    );
    // Every report the simulation asks for is served.
    assert!(
        summary.reports.queue_metrics.is_some(),
        "{:#?}",
        summary.reports
    );
    assert!(
        !summary
            .reports
            .notes
            .iter()
            .any(|note| note.contains("not implemented")),
        "{:#?}",
        summary.reports
    );
}
