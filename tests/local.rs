//! `silver serve` and `silver up`: the local commands, run for real.

mod common;

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A child process stopped (SIGTERM, then SIGKILL) when dropped, even by a failing assertion:
/// otherwise it would outlive the test and hold the test runner's stderr open. Its stderr lines
/// arrive on `stderr` (and are echoed), so a test can wait for what it says.
struct Running {
    child: Option<Child>,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Waits until the child says a line containing `needle` on stderr.
    fn wait_for_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("never said {needle:?} on stderr: {e}"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop(child);
        }
    }
}

/// Starts `silver ARGS…` and returns it with the first line of its stdout (a URL).
fn start(args: &[&std::ffi::OsStr]) -> (Running, String) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("silver"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, stderr) = std::sync::mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = tx.send(line);
        }
    });
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child = Running {
        child: Some(child),
        stderr,
    };
    assert!(line.starts_with("http://127.0.0.1:"), "said {line:?}");
    (child, line.trim().to_string())
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    // It stops on SIGTERM, draining first; a test that waited longer would hide a hang.
    eventually(
        Duration::from_secs(20),
        "it exits on SIGTERM",
        || match child.try_wait().unwrap() {
            Some(_) => Ok(()),
            None => Err("still running".into()),
        },
    );
}

fn wait_for(front: &str, path: &str, expected: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("{path} answers {expected:?}"),
        || {
            let got = get(front, "localhost", path);
            match got.body == expected {
                true => Ok(()),
                false => Err(format!("{got:?}")),
            }
        },
    )
}

fn versioned_app(dir: &Path, version: &str) {
    let py = ECHO_APP.replace(
        "os.environ.get(\"VERSION\", \"?\")",
        &format!("\"{version}\""),
    );
    wsgi_app(dir, "dev", "", &py);
}

#[test]
fn serve_reloads_when_files_change_and_keeps_the_last_good_version() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    versioned_app(&app, "one");
    let (child, url) = start(&[
        "serve".as_ref(),
        app.as_os_str(),
        "--port".as_ref(),
        "0".as_ref(),
    ]);
    let front = url.trim_end_matches('/').to_string();
    wait_for(&front, "/", "version one");
    let env: serde_json::Value =
        serde_json::from_str(&get(&front, "localhost", "/env").body).unwrap();
    assert_eq!(env["SILVER_APP_NAME"], "dev");
    assert_eq!(env["SILVER_RELEASE"], "dev");
    let static_url = env["STATIC_URL"].as_str().unwrap().to_string();
    let css = get(&front, "localhost", &format!("{static_url}style.css"));
    assert_eq!(css.body, "/* dev */\n");

    versioned_app(&app, "two");
    wait_for(&front, "/", "version two");
    // A broken edit does not take the app down.
    std::fs::write(app.join("app.py"), "raise SystemExit('syntax is hard')\n").unwrap();
    child.wait_for_stderr("the last good version keeps serving");
    assert_eq!(get(&front, "localhost", "/").body, "version two");
    versioned_app(&app, "three");
    wait_for(&front, "/", "version three");
    drop(child);
    // Nothing was written into the app directory.
    let mut names: Vec<_> = std::fs::read_dir(&app)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["app.ini", "app.py", "static"],
        "the app directory changed"
    );
}

#[test]
fn up_packs_starts_a_local_node_deploys_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let root = tmp.path().join("node");
    let (child, url) = start(&[
        "up".as_ref(),
        app.as_os_str(),
        "--root".as_ref(),
        root.as_os_str(),
        "--port".as_ref(),
        "0".as_ref(),
    ]);
    let front = url.trim_end_matches('/').to_string();
    let page = get(&front, "127.0.0.1", "/");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("<h1>Hello"), "{}", page.body);
    assert!(root.join("apps/hello/current").exists());
    drop(child);
    // The same root, another app at the same location: only the new one is started and served.
    let other = tmp.path().join("other");
    wsgi_app(&other, "other", "", ECHO_APP);
    let (child, url) = start(&[
        "up".as_ref(),
        other.as_os_str(),
        "--root".as_ref(),
        root.as_os_str(),
        "--port".as_ref(),
        "0".as_ref(),
    ]);
    let said = child.wait_for_stderr("Skipping");
    assert!(said.contains("hello on this root: not started"), "{said}");
    let front = url.trim_end_matches('/').to_string();
    assert_eq!(get(&front, "127.0.0.1", "/").body, "version ?");
    drop(child);
}
