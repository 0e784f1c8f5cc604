//! What the kernel says about a process: resident memory (`VmRSS` in `/proc/<pid>/status`), CPU time
//! (`utime + stime` in `/proc/<pid>/stat`, in clock ticks, converted with `getconf CLK_TCK`), and, for the
//! soak, its threads (`Threads` in `/proc/<pid>/status`) and open file descriptors (`/proc/<pid>/fd`).

use std::path::Path;
use std::process::Command;

use crate::SetupError;

/// Reads a process's memory and CPU time; every reading is `None` when there is no pid or the process is
/// gone, so a missing server shows as missing figures rather than zeros.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pid: Option<u32>,
    ticks_per_second: f64,
}

impl Probe {
    /// A probe of `pid` (or of nothing).
    pub fn new(pid: Option<u32>) -> Self {
        Self { pid, ticks_per_second: clock_ticks_per_second() as f64 }
    }

    /// The pid probed.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        parse_vm_rss_kib(&status)
    }

    /// Threads of the process (a task or runtime that never ends shows here first).
    pub fn threads(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        parse_status_field(&status, "Threads:")
    }

    /// Open file descriptors: sockets, the epoll instance, log files (a socket never closed shows here).
    pub fn open_fds(&self) -> Option<u64> {
        let entries = std::fs::read_dir(format!("/proc/{}/fd", self.pid?)).ok()?;
        Some(entries.filter(|e| e.is_ok()).count() as u64)
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / self.ticks_per_second)
    }

    /// System (kernel) CPU seconds used so far: on loopback this includes the receiving side's
    /// TCP processing, which bounds what the server's own code can save.
    pub fn sys_cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        parse_cpu_split(&stat).map(|(_, sys)| sys as f64 / self.ticks_per_second)
    }
}

/// User + system CPU seconds this process (the load generator) used so far.
pub fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / clock_ticks_per_second() as f64)
}

/// This process's soft limit on open files, from `/proc/self/limits`.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// The clock ticks per second `/proc/<pid>/stat` counts in (`getconf CLK_TCK`; 100 on Linux if that fails).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Reads a pid written by the server (whitespace around it is fine).
pub fn read_pid_file(path: &Path) -> Result<u32, SetupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SetupError::PidFile { path: path.to_owned(), reason: e.to_string() })?;
    text.trim().parse().map_err(|_| SetupError::PidFile {
        path: path.to_owned(),
        reason: format!("{:?} is not a pid", text.trim()),
    })
}

/// `VmRSS:   12345 kB` → 12345.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    parse_status_field(status, "VmRSS:")
}

/// The first number after `field` (e.g. `Threads:`) in `/proc/<pid>/status`.
fn parse_status_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Fields 14 and 15 (utime, stime) of `/proc/<pid>/stat`, counted after the `)` that ends the command
/// name, which may itself hold spaces and parentheses.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    parse_cpu_split(stat).map(|(user, sys)| user + sys)
}

/// Fields 14 and 15 (utime, stime) of `/proc/<pid>/stat`, apart.
pub fn parse_cpu_split(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rss() {
        let status = "Name:\tswitchboard\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12345));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
        assert_eq!(parse_status_field(status, "Threads:"), Some(3));
    }

    #[test]
    fn parses_cpu_ticks_even_with_odd_command_names() {
        let stat = "4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 500 0 0 0 170 30 0 0 20 0 3 0 123 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(200));
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = Probe::new(Some(std::process::id()));
        assert!(me.rss_kib().is_some_and(|kib| kib > 0));
        assert!(me.cpu_seconds().is_some());
        assert!(me.threads().is_some_and(|n| n >= 1));
        // stdin, stdout and stderr at least.
        assert!(me.open_fds().is_some_and(|n| n >= 3));
        assert!(Probe::new(None).rss_kib().is_none());
        assert!(Probe::new(None).open_fds().is_none());
        assert!(open_files_limit().is_some());
    }
}
