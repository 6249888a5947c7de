//! Process CPU time and memory from `/proc/self` (Linux). The whole suite runs in this
//! process, so these are the suite's figures plus the load generator's.

use std::time::Duration;

/// `USER_HZ`: the unit of `/proc/<pid>/stat` times, 100 on every Linux architecture's
/// user-space ABI (10 ms resolution; runs last seconds, so per-call figures are still fine).
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time this process has used so far (zero when unreadable).
pub fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = ticks(14 - 3) + ticks(15 - 3);
    Duration::from_millis(total * 1000 / TICKS_PER_SECOND)
}

/// A `/proc/self/status` memory line (`VmRSS`, `VmHWM`, …) in KiB.
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Resident memory now, in KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS").unwrap_or(0)
}

/// Peak resident memory (`VmHWM`) since the process started or since the last
/// [`reset_peak_rss`], in KiB.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM").unwrap_or(0)
}

/// Resets the peak to the current resident size (writes `5` to `/proc/self/clear_refs`), so
/// that each scenario reports its own peak; false when the kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// What the report says about the machine.
pub fn machine() -> serde_json::Value {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let mem_total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        });
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu_model,
        "mem_total_kib": mem_total_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(rss_kib() > 0);
        assert!(peak_rss_kib() >= rss_kib() / 2);
        // CPU time only grows.
        let before = cpu_time();
        assert!(cpu_time() >= before);
    }
}
