//! The dashboard's system readings, from /proc and statvfs(2). Each returns `None` when
//! the source cannot be read (a container without /proc, say), and the page shows "-".

use std::path::Path;

pub struct ProcessReading {
    /// User plus system CPU time of the daemon so far.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// /proc/self/stat counts CPU time in USER_HZ ticks, which Linux fixes at 100 for
/// user space on every architecture.
const USER_HZ: f64 = 100.0;

pub fn process_reading() -> Option<ProcessReading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let cpu_seconds = parse_stat_cpu_ticks(&stat)? as f64 / USER_HZ;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_bytes = kib_field(&status, "VmRSS:")? * 1024;
    Some(ProcessReading {
        cpu_seconds,
        rss_bytes,
    })
}

/// utime + stime of a /proc/PID/stat line. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from its closing parenthesis.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (total, available) bytes of memory.
pub fn memory() -> Option<(u64, u64)> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some((
        kib_field(&meminfo, "MemTotal:")? * 1024,
        kib_field(&meminfo, "MemAvailable:")? * 1024,
    ))
}

/// The 1, 5 and 15 minute load averages.
pub fn load() -> Option<String> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

/// (total, available to the daemon) bytes of the file system holding `path`.
pub fn disk(path: &Path) -> Option<(u64, u64)> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let fragment = stat.fragment_size() as u64;
    Some((
        stat.blocks() as u64 * fragment,
        stat.blocks_available() as u64 * fragment,
    ))
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_past_a_name_with_spaces() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("42 (x) S 1"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn readings_of_this_process_are_plausible() {
        let reading = process_reading().expect("/proc is mounted in the test environment");
        assert!(reading.rss_bytes > 0);
        let (total, available) = memory().unwrap();
        assert!(available <= total && total > 0);
        let (total, available) = disk(Path::new("/")).unwrap();
        assert!(available <= total && total > 0);
        assert_eq!(load().unwrap().split(' ').count(), 3);
    }
}
