//! The node's figures from `/proc` and `statvfs`: a fixed handful of small files per sample,
//! whatever the number of apps or processes. Counters are read raw; the sampler turns them
//! into rates.

use std::path::Path;

/// Raw readings at one moment. Counters only grow (until a reboot).
#[derive(Debug, Clone, Default)]
pub struct Raw {
    /// CPU jiffies over all cores: (busy, total).
    pub cpu: (u64, u64),
    pub load: [f64; 3],
    pub mem_total: u64,
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
    /// Pages swapped in and out since boot.
    pub swap_in: u64,
    pub swap_out: u64,
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// Of the file system holding the store.
    pub fs_avail: u64,
    pub fs_size: u64,
    /// The agent's own CPU (clock ticks) and memory.
    pub self_ticks: u64,
    pub self_rss: u64,
}

/// Reads every figure; one that cannot be read stays zero (a container without swap, say).
pub fn read(store: &Path, disks: &[String]) -> Raw {
    let mut raw = Raw::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        raw.cpu = cpu(&stat);
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        for (slot, v) in raw.load.iter_mut().zip(load.split_whitespace()) {
            *slot = v.parse().unwrap_or(0.0);
        }
    }
    if let Ok(mem) = std::fs::read_to_string("/proc/meminfo") {
        let kib = |key: &str| field(&mem, key).unwrap_or(0) * 1024;
        raw.mem_total = kib("MemTotal:");
        raw.mem_available = kib("MemAvailable:");
        raw.swap_total = kib("SwapTotal:");
        raw.swap_free = kib("SwapFree:");
    }
    if let Ok(vm) = std::fs::read_to_string("/proc/vmstat") {
        raw.swap_in = field(&vm, "pswpin").unwrap_or(0);
        raw.swap_out = field(&vm, "pswpout").unwrap_or(0);
    }
    if let Ok(stats) = std::fs::read_to_string("/proc/diskstats") {
        (raw.disk_read_bytes, raw.disk_written_bytes) = diskstats(&stats, disks);
    }
    if let Ok(dev) = std::fs::read_to_string("/proc/net/dev") {
        (raw.net_rx_bytes, raw.net_tx_bytes) = netdev(&dev);
    }
    if let Ok(vfs) = rustix::fs::statvfs(store) {
        raw.fs_avail = vfs.f_bavail * vfs.f_frsize;
        raw.fs_size = vfs.f_blocks * vfs.f_frsize;
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        raw.self_ticks = self_ticks(&stat);
    }
    raw.self_rss = rss(Path::new("/proc/self/statm"));
    raw
}

/// Whole disks (`/sys/block`), not partitions, loop devices or RAM disks: their I/O is the
/// node's, counted once.
pub fn disks() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            !["loop", "ram", "zram", "dm-", "sr"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect()
}

/// Clock ticks per second for `/proc/*/stat` times (Linux: always 100 in user space ABI).
pub const TICKS_PER_SEC: f64 = 100.0;

/// Resident memory of `pid` and every process under it, in bytes.
pub fn tree_rss(pid: u32) -> (u64, usize) {
    let mut stack = vec![pid];
    let (mut bytes, mut count) = (0, 0);
    // Bounded: a fork bomb in one app does not make the sampler walk for ever.
    while let Some(p) = stack.pop() {
        if count >= 4096 {
            break;
        }
        let rss = rss(&Path::new("/proc").join(p.to_string()).join("statm"));
        if rss == 0 {
            continue;
        }
        bytes += rss;
        count += 1;
        let children = format!("/proc/{p}/task/{p}/children");
        if let Ok(list) = std::fs::read_to_string(children) {
            stack.extend(
                list.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    (bytes, count)
}

fn rss(statm: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(statm) else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * rustix::param::page_size() as u64
}

fn cpu(stat: &str) -> (u64, u64) {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// `key value` or `key: value kB` lines.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .filter(|rest| rest.starts_with([' ', '\t']))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn diskstats(text: &str, disks: &[String]) -> (u64, u64) {
    let (mut read, mut written) = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || !disks.iter().any(|d| d == f[2]) {
            continue;
        }
        // Sectors are 512 bytes here whatever the device's own sector size.
        read += f[5].parse::<u64>().unwrap_or(0) * 512;
        written += f[9].parse::<u64>().unwrap_or(0) * 512;
    }
    (read, written)
}

fn netdev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

fn self_ticks(stat: &str) -> u64 {
    // After the `(comm)`, which may hold spaces: utime and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_formats() {
        assert_eq!(cpu("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 1 2 3\n"), (15, 100));
        assert_eq!(
            field(
                "MemTotal:       16384 kB\nMemAvailable:    8192 kB\n",
                "MemAvailable:"
            ),
            Some(8192)
        );
        assert_eq!(field("pswpin 7\npswpout 9\n", "pswpin"), Some(7));
        let disks = ["sda".to_string()];
        let stats =
            "   8       0 sda 10 0 4 0 20 0 8 0 0 0 0\n   8       1 sda1 10 0 4 0 20 0 8 0 0 0 0\n";
        assert_eq!(diskstats(stats, &disks), (4 * 512, 8 * 512));
        let dev = "h1\nh2\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 300 3 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n";
        assert_eq!(netdev(dev), (300, 500));
        assert_eq!(self_ticks("1 (a b) S 1 1 1 0 -1 0 0 0 0 0 7 3 0 0"), 10);
    }

    #[test]
    fn reads_this_machine() {
        let raw = read(Path::new("/"), &disks());
        assert!(raw.cpu.1 > 0 && raw.mem_total > 0 && raw.fs_size > 0);
        assert!(raw.self_rss > 0);
        let (bytes, count) = tree_rss(std::process::id());
        assert!(bytes > 0 && count >= 1);
    }
}
