//! Two apps on one node, each as its own Unix user: neither can read, write or signal the
//! other's files, processes or environment. Needs root (the agent makes the users).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `silver run APP -- sh -c SCRIPT`: (exit code, stdout + stderr).
fn run_as(agent: &Agent, app: &str, script: &str) -> (i32, String) {
    let out = agent
        .silver()
        .args(["run", app, "--", "/bin/sh", "-c", script])
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    (out.status.code().unwrap_or(-1), text)
}

/// The pids of processes running as `uid`.
fn pids_of(uid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid))
        .collect()
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.uid(), meta.mode() & 0o7777)
}

#[test]
#[ignore = "system tier (root: one user per app): cargo test -- --include-ignored"]
fn two_apps_cannot_reach_each_others_files_processes_or_environment() {
    assert!(is_root(), "the system tier runs as root");
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    for (name, host) in [("alpha", "alpha.test"), ("beta", "beta.test")] {
        let dir = tmp.path().join(name);
        wsgi_app(
            &dir,
            name,
            &format!("default_location = {host}\n[variables]\nVERSION = {name}\n"),
            ECHO_APP,
        );
        agent.deployed(&tmp.path().join("cache"), &dir, &[]);
        assert_eq!(get(&agent.front, host, "/").body, format!("version {name}"));
    }
    let alpha = agent.root.join("apps/alpha");
    // Each app's processes and `silver run` are its own user, and not root.
    let (code, alpha_user) = run_as(&agent, "alpha", "id -un");
    assert_eq!(code, 0, "{alpha_user}");
    let (_, beta_user) = run_as(&agent, "beta", "id -un");
    assert_ne!(alpha_user.trim(), beta_user.trim());
    let id = std::fs::read_to_string(agent.root.join("node-id")).unwrap();
    assert_eq!(alpha_user.trim(), format!("s{}-alpha", &id.trim()[..6]));
    let alpha_uid = owner(&alpha.join("data")).0;
    assert_ne!(alpha_uid, 0);
    assert!(
        !pids_of(alpha_uid).is_empty(),
        "alpha's web runs as its user"
    );
    // Its state is its own: 0700 directories, 0600 environment files.
    for dir in ["data", "logs", "run", "cache"] {
        assert_eq!(owner(&alpha.join(dir)), (alpha_uid, 0o700), "{dir}");
    }
    for file in ["run/environment.json", "run/environment.conf"] {
        assert_eq!(owner(&alpha.join(file)), (alpha_uid, 0o600), "{file}");
    }
    // The agent's own files are its alone.
    let mut own = vec![agent.root.join("token"), agent.root.join("node-id")];
    own.extend(
        std::fs::read_dir(agent.root.join("artifacts"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    own.extend(["history.jsonl", "locations", "tasks"].map(|f| alpha.join(f)));
    for file in own {
        let mode = owner(&file).1;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", file.display());
    }
    // Beta tries each way into alpha; every one is refused by the kernel. Alpha's processes
    // come and go (workers are replaced): a try that found its pid gone tries the next one.
    let a = alpha.display();
    let connect = |socket: &str| {
        format!("python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect('{socket}')\"")
    };
    let alpha_tasks = format!("{a}/run/tasks.sock");
    let cases: [(&str, &dyn Fn(u32) -> String); 7] = [
        ("queue a task for it", &|_| connect(&alpha_tasks)),
        ("read its environment file", &|_| {
            format!("cat {a}/run/environment.json")
        }),
        ("list its data", &|_| format!("ls {a}/data")),
        ("write its data", &|_| format!("touch {a}/data/from-beta")),
        ("read its logs", &|_| format!("cat {a}/logs/web.log")),
        ("signal its process", &|pid| format!("kill -0 {pid}")),
        ("read its process environment", &|pid| {
            format!("cat /proc/{pid}/environ")
        }),
    ];
    for (what, script) in cases {
        let said = pids_of(alpha_uid)
            .into_iter()
            .map(|pid| run_as(&agent, "beta", &script(pid)))
            .find(|(_, said)| !said.contains("No such"))
            .expect("a process of alpha's that lives");
        let (code, said) = said;
        assert_ne!(code, 0, "beta could {what}: {said}");
        assert!(
            said.contains("Permission denied") || said.contains("Operation not permitted"),
            "beta tried to {what}: {said}"
        );
    }
    assert!(!alpha.join("data/from-beta").exists());
    // Alpha itself can do all of it to its own.
    let (code, said) = pids_of(alpha_uid)
        .into_iter()
        .map(|pid| {
            let script = format!(
                "cat {a}/run/environment.json > /dev/null && touch {a}/data/mine && kill -0 {pid} && {}",
                connect(&alpha_tasks)
            );
            run_as(&agent, "alpha", &script)
        })
        .find(|(_, said)| !said.contains("No such"))
        .expect("a process of alpha's that lives");
    assert_eq!(code, 0, "{said}");
    // The socket checks who connects besides: another user that reaches it (root, here) is
    // refused by the queue too.
    let mut stream = std::os::unix::net::UnixStream::connect(alpha.join("run/tasks.sock")).unwrap();
    use std::io::{Read, Write};
    let body = r#"{"path": "/"}"#;
    write!(
        stream,
        "POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut said = String::new();
    stream.read_to_string(&mut said).unwrap();
    assert!(said.starts_with("HTTP/1.1 403"), "{said}");
    assert!(
        said.contains("only the app's own user may queue its tasks"),
        "{said}"
    );
    // Releases stay read-only, even to their own app.
    let (code, said) = run_as(&agent, "alpha", "touch app.py");
    assert_ne!(code, 0, "alpha wrote into its release: {said}");
}
