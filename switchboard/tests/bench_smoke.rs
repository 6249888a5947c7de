//! `switchboard bench --quick` runs every scenario end to end and reports well-formed
//! figures. A smoke test of the benchmark command, never of speed: nothing here asserts
//! how fast anything is.

use std::process::Command;

#[test]
fn quick_bench_reports_every_figure_with_a_baseline_and_a_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "--quick", "--in-flight", "2", "--json"])
        .arg(&json)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("running switchboard bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(summary["plan"]["mode"], "quick");
    assert!(summary["machine"]["cpus"].as_u64().unwrap() > 0);
    let scenarios = summary["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // routing-replicas needs PostgreSQL: without a server it says it did not run.
    let postgres = std::env::var(switchboard_server_kit::testing::POSTGRES_URL_VAR)
        .is_ok_and(|url| !url.is_empty());
    if postgres {
        assert!(names.contains(&"routing-replicas"), "{names:?}");
    } else {
        assert!(
            stdout.contains("routing-replicas not run: it needs a PostgreSQL server"),
            "{stdout}"
        );
    }
    for expected in [
        "grpc-ceiling",
        "bare-proxy",
        "gateway-health",
        "gateway-read",
        "create-conversation",
        "idle-streams",
        "offer-latency",
        "backlog-isolation",
        "lifecycle",
        "routing-scale",
        "routing-rules",
        "offer-expiry",
        "reports",
        "intake",
        "exports",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
        assert!(
            stdout.contains(expected),
            "{expected} missing from the table:\n{stdout}"
        );
    }
    for scenario in scenarios {
        let name = scenario["name"].as_str().unwrap();
        assert_eq!(scenario["errors"], 0, "{name}: calls failed: {scenario:#}");
        let figures = scenario["figures"].as_array().unwrap();
        assert!(!figures.is_empty(), "{name} has no figure");
        for figure in figures {
            let what = format!("{name}: {}", figure["name"]);
            for field in ["value", "baseline", "ratio"] {
                let x = figure[field].as_f64().unwrap_or(f64::NAN);
                assert!(x.is_finite(), "{what}: {field} is not finite: {figure}");
            }
            assert!(
                figure["baseline"].as_f64().unwrap() > 0.0,
                "{what}: no baseline"
            );
            assert!(figure["ratio"].as_f64().unwrap() > 0.0, "{what}: no ratio");
            assert!(
                !figure["baseline_name"].as_str().unwrap().is_empty(),
                "{what}: unnamed baseline"
            );
        }
        assert!(
            !scenario["runs"].as_array().unwrap().is_empty(),
            "{name}: no runs"
        );
    }
}

#[test]
fn scenario_filter_runs_only_the_named_scenarios() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "bench",
            "--quick",
            "--in-flight",
            "2",
            "--scenario",
            "grpc-ceiling",
        ])
        .output()
        .expect("running switchboard bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("grpc-ceiling"), "{stdout}");
    assert!(!stdout.contains("create-conversation"), "{stdout}");

    let unknown = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "--quick", "--scenario", "no-such-scenario"])
        .output()
        .expect("running switchboard bench");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no scenario matches"));
}
