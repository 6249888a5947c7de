//! Figures, each with its same-run baseline and the ratio, as a table and as JSON.

use serde::Serialize;

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Throughput and the like.
    Higher,
    /// Latency, CPU and memory.
    Lower,
}

/// One measured figure against its baseline from the same run.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// What was measured, e.g. "GetAgentState via gateway: max throughput (64 in flight)".
    pub name: String,
    /// Unit of `value` and `baseline`.
    pub unit: &'static str,
    /// The measured value.
    pub value: f64,
    /// What the baseline is, e.g. "GetAgentState direct to routing-svc".
    pub baseline_name: String,
    /// The baseline's value, measured in the same run.
    pub baseline: f64,
    /// `value / baseline`.
    pub ratio: f64,
    /// Which way is better.
    pub better: Better,
    /// The goal for the ratio, when the project has one (issue 7).
    pub goal: Option<&'static str>,
}

impl Figure {
    /// A figure with its ratio computed (0 when the baseline is 0, so it stays finite).
    pub fn new(
        name: impl Into<String>,
        unit: &'static str,
        value: f64,
        baseline_name: impl Into<String>,
        baseline: f64,
        better: Better,
    ) -> Figure {
        let ratio = if baseline > 0.0 && value.is_finite() {
            value / baseline
        } else {
            0.0
        };
        Figure {
            name: name.into(),
            unit,
            value,
            baseline_name: baseline_name.into(),
            baseline,
            ratio,
            better,
            goal: None,
        }
    }

    /// The same figure with a goal for its ratio.
    pub fn goal(mut self, goal: &'static str) -> Figure {
        self.goal = Some(goal);
        self
    }
}

/// Everything one scenario measured.
#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    /// Scenario name (what `--scenario` matches).
    pub name: String,
    /// `none` (no database), `sqlite` or `postgres`.
    pub storage: &'static str,
    /// What it measures, in one sentence.
    pub description: &'static str,
    /// The figures with their baselines.
    pub figures: Vec<Figure>,
    /// Every run behind the figures (throughput, CPU, latency quantiles, errors).
    pub runs: Vec<serde_json::Value>,
    /// Calls that failed, summed over the runs (a benchmark of failures means nothing).
    pub errors: u64,
    /// Wall time of the scenario, set-up included.
    pub wall_s: f64,
}

fn format_value(value: f64, unit: &str) -> String {
    let number = if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    format!("{number} {unit}")
}

/// The results as a plain-text table.
pub fn table(results: &[ScenarioResult]) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "scenario".into(),
        "figure".into(),
        "value".into(),
        "baseline (same run)".into(),
        "ratio".into(),
    ]];
    for result in results {
        let scenario = format!("{} [{}]", result.name, result.storage);
        for figure in &result.figures {
            let goal = figure
                .goal
                .map(|goal| format!(" (goal {goal})"))
                .unwrap_or_default();
            rows.push([
                scenario.clone(),
                figure.name.clone(),
                format_value(figure.value, figure.unit),
                format!(
                    "{}: {}",
                    figure.baseline_name,
                    format_value(figure.baseline, figure.unit)
                ),
                if figure.baseline > 0.0 {
                    format!("{:.3}x{goal}", figure.ratio)
                } else {
                    format!("n/a (baseline not above 0){goal}")
                },
            ]);
        }
        if result.errors > 0 {
            rows.push([
                scenario.clone(),
                format!("ERRORS: {} calls failed (see the JSON runs)", result.errors),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("-|-"));
            out.push('\n');
        }
    }
    out
}
