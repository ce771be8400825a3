//! Metrics and the status page against a real agent under load: `silver status --json`,
//! `/metrics` through Debian's `promtool`, the read-only token and signed links, an alert
//! command, and the page in Debian's headless Chromium (graphs with data, deploy markers, the
//! verdict, each app's row, no console errors), with a screenshot kept.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Sends requests to `host` until told to stop; every 10th goes to `/fail` (a 500).
fn load(front: String, host: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let path = if i % 10 == 0 { "/fail" } else { "/" };
            let _ = get(&front, host, path);
        }
    })
}

fn status(agent: &Agent) -> Value {
    let out = agent.silver().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Points of `field` in the app's series that hold a value above zero.
fn busy_points(view: &Value, app: &str, field: &str) -> usize {
    let s = &view["series"][format!("app:{app}")];
    let Some(i) = s["fields"]
        .as_array()
        .and_then(|f| f.iter().position(|x| x == field))
    else {
        return 0;
    };
    s["values"][i].as_array().map_or(0, |v| {
        v.iter()
            .filter(|x| x.as_f64().is_some_and(|x| x > 0.0))
            .count()
    })
}

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_string())
}

#[test]
#[ignore = "system tier (gunicorn, promtool, chromium): cargo test -- --include-ignored"]
fn status_metrics_alerts_and_the_page_in_a_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let alerts = tmp.path().join("alerts.log");
    let command = format!(
        "echo \"$SILVER_ALERT $SILVER_ALERT_STATE $SILVER_ALERT_SUBJECT\" >> {}",
        alerts.display()
    );
    let read_token = tmp.path().join("read-token");
    let agent = Agent::start(
        &tmp.path().join("node"),
        &[
            "--alert-command",
            &command,
            "--read-token-file",
            read_token.to_str().unwrap(),
        ],
    );
    let app = tmp.path().join("echo");
    wsgi_app(&app, "echo", "[variables]\nVERSION = 1\n", ECHO_APP);
    let cache = tmp.path().join("cache");
    agent.deployed(&cache, &app, &["--location", "status.test"]);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(agent.front.clone(), "status.test", stop.clone());
    // Samples come every 10 s: wait for three with traffic, then deploy and roll back under load.
    eventually(Duration::from_secs(60), "samples with requests", || {
        let n = busy_points(&status(&agent), "echo", "rps");
        (n >= 3).then_some(()).ok_or(n.to_string())
    });
    wsgi_app(&app, "echo", "[variables]\nVERSION = 2\n", ECHO_APP);
    agent.deployed(&cache, &app, &["--location", "status.test"]);
    let out = agent.silver().args(["rollback", "echo"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let view = eventually(
        Duration::from_secs(60),
        "samples after the rollback",
        || {
            let v = status(&agent);
            let last = v["markers"]
                .as_array()
                .and_then(|m| m.last())
                .map_or(0, |m| m["t"].as_u64().unwrap());
            let after = v["series"]["app:echo"]["t"].as_array().map_or(0, |t| {
                t.iter().filter(|t| t.as_u64().unwrap() > last + 10).count()
            });
            (after >= 2).then_some(v.clone()).ok_or(after.to_string())
        },
    );
    // 10% of requests fail: the 5xx alert fired, through the command.
    eventually(Duration::from_secs(30), "the 5xx alert", || {
        let log = std::fs::read_to_string(&alerts).unwrap_or_default();
        log.contains("5xx firing echo").then_some(()).ok_or(log)
    });
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    let kinds: Vec<&str> = view["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"deploy") && kinds.contains(&"rollback"),
        "{kinds:?}"
    );
    assert!(
        view["releases"].as_array().unwrap().len() >= 2,
        "{}",
        view["releases"]
    );
    assert!(view["verdict"]["line"].as_str().unwrap().len() > 10);
    assert!(view["current"]["mem_available_bytes"].as_f64().unwrap() > 0.0);
    let echo = &view["apps"][0];
    assert_eq!(echo["app"], "echo");
    assert!(
        echo["figures"]["memory_bytes"].as_f64().unwrap() > 0.0,
        "{echo}"
    );
    // The terminal view.
    let out = agent.silver().args(["status"]).output().unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("cpu busy") && text.contains("echo ("),
        "{text}"
    );
    metrics_and_tokens(&agent, &read_token, tmp.path());
    page_in_chromium(&agent);
}

fn metrics_and_tokens(agent: &Agent, read_token: &Path, tmp: &Path) {
    let read = std::fs::read_to_string(read_token)
        .unwrap()
        .trim()
        .to_string();
    let bearer = format!("Authorization: Bearer {read}");
    let (code, text) = curl(&["-H", &bearer, &format!("{}/metrics", agent.url)]);
    assert_eq!(code, 200, "{text}");
    for name in [
        "node_load1",
        "node_memory_mem_available_bytes",
        "silver_http_requests_total{app=\"echo\",code=\"5xx\"}",
        "silver_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    let file = tmp.join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The read-only token reads, and does nothing else.
    let (code, _) = curl(&["-H", &bearer, &format!("{}/v1/status", agent.url)]);
    assert_eq!(code, 200);
    let (code, _) = curl(&[
        "-H",
        &bearer,
        &format!("{}/v1/apps/echo/releases", agent.url),
    ]);
    assert_eq!(code, 401);
    let (code, _) = curl(&[
        "-H",
        &bearer,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{}",
        &format!("{}/v1/status/link", agent.url),
    ]);
    assert_eq!(code, 401);
    // Without a credential, or with a forged or expired link: nothing.
    let (code, _) = curl(&[&format!("{}/metrics", agent.url)]);
    assert_eq!(code, 401);
    let forged = format!(
        "{}/status?exp=99999999999&sig={}",
        agent.url,
        "0".repeat(64)
    );
    assert_eq!(curl(&[&forged]).0, 401);
    let expired = format!("{}/status?exp=1&sig={}", agent.url, "0".repeat(64));
    assert_eq!(curl(&[&expired]).0, 401);
}

fn page_in_chromium(agent: &Agent) {
    let out = agent.silver().args(["status", "--open"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let url = stdout(&out).trim().to_string();
    assert!(url.contains("/status?exp="), "{url}");
    let profile = tempfile::tempdir().unwrap();
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs (scripts/install-deps.sh installs it)")
    };
    let dom = chromium(&["--dump-dom"]);
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    let console = String::from_utf8_lossy(&dom.stderr).into_owned();
    assert!(html.contains("id=\"verdict\""), "no verdict: {html}");
    assert!(html.contains("data-app=\"echo\""), "no app row");
    let graphs: Vec<usize> = html
        .match_indices("data-points=\"")
        .map(|(i, m)| {
            html[i + m.len()..]
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(graphs.len() >= 11, "{} graphs", graphs.len());
    assert!(
        graphs.iter().all(|n| *n > 0),
        "a graph without data: {graphs:?}"
    );
    assert!(html.contains("class=\"marker\""), "no deploy marker");
    assert!(
        html.contains("class=\"release\""),
        "no release before/after row"
    );
    let errors: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let out = chromium(&[
        "--window-size=1200,2400",
        &format!("--screenshot={}", shot.display()),
    ]);
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("status page screenshot: {}", shot.display());
}
