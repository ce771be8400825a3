//! A small HTTP/1.1 load generator for the runtime benchmarks (`bench/runtime.sh`).
//!
//! `loadgen run ADDR HOST PATH CONNECTIONS SECONDS OUT [STOP_FILE]` keeps CONNECTIONS keep-alive
//! connections busy (reconnecting whenever the server closes one) until SECONDS pass or
//! STOP_FILE appears, and writes one CSV row per request: start_ns, end_ns, status, body.
//! `loadgen report OUT [SWITCHES]` prints a JSON summary; SWITCHES has one line per deploy,
//! `start_ns end_ns version`, and every request started between one deploy's end and the next
//! one's start must be answered by that deploy's version.
//!
//! Standard library only, so it costs nothing to build with the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Sample {
    start: u128,
    end: u128,
    status: u16,
    body: String,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") if args.len() >= 7 => run(&args[1..]),
        Some("report") if args.len() >= 2 => report(&args[1], args.get(2)),
        _ => {
            eprintln!("usage: loadgen run ADDR HOST PATH CONNECTIONS SECONDS OUT [STOP_FILE]\n       loadgen report OUT [SWITCHES]");
            std::process::exit(2);
        }
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn run(args: &[String]) {
    let (addr, host, path) = (args[0].clone(), args[1].clone(), args[2].clone());
    let connections: usize = args[3].parse().expect("CONNECTIONS");
    let seconds: u64 = args[4].parse().expect("SECONDS");
    let out = args[5].clone();
    let stop_file = args.get(6).cloned();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, host, path, stop_file) =
                (addr.clone(), host.clone(), path.clone(), stop_file.clone());
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut conn: Option<BufReader<TcpStream>> = None;
                let mut checked = Instant::now();
                while Instant::now() < deadline {
                    if let Some(f) = &stop_file {
                        if checked.elapsed() > Duration::from_millis(100) {
                            checked = Instant::now();
                            if Path::new(f).exists() {
                                break;
                            }
                        }
                    }
                    let start = now_ns();
                    let result = one(&mut conn, &addr, &host, &path);
                    let end = now_ns();
                    let (status, body) = result.unwrap_or_else(|e| {
                        conn = None;
                        (0, e.to_string())
                    });
                    samples.push(Sample {
                        start,
                        end,
                        status,
                        body,
                    });
                }
                samples
            })
        })
        .collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out).expect("OUT"));
    for t in threads {
        for s in t.join().unwrap() {
            let body = s.body.replace([',', '\n', '\r'], " ");
            writeln!(file, "{},{},{},{}", s.start, s.end, s.status, body).unwrap();
        }
    }
}

/// One request on the kept connection (opening one if needed); returns status and body.
fn one(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: &str,
    host: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    if conn.is_none() {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        *conn = Some(BufReader::new(s));
    }
    let reader = conn.as_mut().unwrap();
    write!(
        reader.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    )?;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::other("closed before answering"));
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut close, mut chunked) = (0usize, false, false);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        } else if l.starts_with("connection:") && l.contains("close") {
            close = true;
        } else if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    if close {
        *conn = None;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn report(out: &str, switches: Option<&String>) {
    let text = std::fs::read_to_string(out).expect("OUT");
    let mut samples: Vec<Sample> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ',');
            Some(Sample {
                start: f.next()?.parse().ok()?,
                end: f.next()?.parse().ok()?,
                status: f.next()?.parse().ok()?,
                body: f.next().unwrap_or("").to_string(),
            })
        })
        .collect();
    samples.sort_by_key(|s| s.end);
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.status == 200).collect();
    let failed = samples.len() - ok.len();
    let mut latencies: Vec<u128> = ok.iter().map(|s| s.end - s.start).collect();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |ns| *ns as f64 / 1e6)
    };
    let span_s = match (
        samples.iter().map(|s| s.start).min(),
        samples.iter().map(|s| s.end).max(),
    ) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    let longest_gap_ms = ok
        .windows(2)
        .map(|w| w[1].end - w[0].end)
        .max()
        .unwrap_or(0) as f64
        / 1e6;
    let mut stale = 0usize;
    let mut deploys = 0usize;
    if let Some(path) = switches {
        let list: Vec<(u128, u128, String)> = std::fs::read_to_string(path)
            .expect("SWITCHES")
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ' ');
                Some((
                    f.next()?.parse().ok()?,
                    f.next()?.parse().ok()?,
                    f.next()?.trim().to_string(),
                ))
            })
            .collect();
        deploys = list.len();
        for (i, (_, done, version)) in list.iter().enumerate() {
            let next_start = list.get(i + 1).map_or(u128::MAX, |n| n.0);
            stale += ok
                .iter()
                .filter(|s| s.start > *done && s.start < next_start && s.body.trim() != version)
                .count();
        }
    }
    let first_failure = samples
        .iter()
        .find(|s| s.status != 200)
        .map(|s| s.body.clone());
    println!(
        "{{\"requests\": {}, \"ok\": {}, \"failed\": {failed}, \"first_failure\": {:?}, \"deploys\": {deploys}, \"old_version_after_switch\": {stale}, \"longest_gap_ms\": {longest_gap_ms:.1}, \"throughput_rps\": {:.1}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}",
        samples.len(),
        ok.len(),
        first_failure.unwrap_or_default(),
        ok.len() as f64 / span_s.max(1e-9),
        pct(0.50),
        pct(0.99),
    );
}
