//! Crash safety: kill -9 the agent at random moments during a run of deploys, restart it, and
//! check that `fsck` is clean and `current` always names a complete release.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{copy_fixture, pack_dir, silver, stderr, Agent, Lcg};

fn fsck(root: &Path) -> serde_json::Value {
    let out = silver()
        .args(["fsck", "--json", "--root"])
        .arg(root)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("fsck said: {}", stderr(&out)));
    assert!(out.status.success(), "fsck found problems: {report}");
    report
}

#[test]
fn kill_9_during_deploys_never_leaves_a_broken_node() {
    let seed = std::env::var("SILVER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    eprintln!("crash test seed: {seed} (replay with SILVER_CRASH_SEED={seed})");
    let mut rng = Lcg(seed);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("node");
    // Versions big enough that uploads and staging take a while, so kills land mid-deploy.
    let mut archives = vec![];
    for i in 0..3 {
        let app = tmp.path().join(format!("v{i}"));
        copy_fixture("hello-wsgi", &app);
        for f in 0..40 {
            let body: Vec<u8> = (0..50_000u32)
                .map(|b| (b.wrapping_mul(31).wrapping_add(f * 7 + i)) as u8)
                .collect();
            std::fs::create_dir_all(app.join("data")).unwrap();
            std::fs::write(app.join(format!("data/{f}.bin")), body).unwrap();
        }
        archives.push(pack_dir(&app, &tmp.path().join("dist")).1);
    }
    for round in 0..8 {
        let mut agent = Agent::start(&root, &[]);
        // Recovery ran at start: whatever the last kill left, the store checks clean now.
        let report = fsck(&root);
        assert_eq!(
            report["leftovers"],
            serde_json::json!([]),
            "round {round}: recovery left {report}"
        );
        let archive = &archives[rng.next(archives.len() as u64) as usize];
        let mut client = std::process::Command::new(assert_cmd::cargo::cargo_bin("silver"))
            .arg("deploy")
            .arg(archive)
            .args(["--node", &agent.url])
            .env("SILVER_TOKEN", &agent.token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.next(400)));
        agent.child.kill().unwrap(); // SIGKILL
        agent.child.wait().unwrap();
        let _ = client.wait();
        let current = root.join("apps/hello/current");
        if let Ok(target) = std::fs::read_link(&current) {
            assert!(
                root.join("apps/hello").join(&target).is_dir(),
                "round {round}: current -> {} is not a release",
                target.display()
            );
        }
        drop(agent);
    }
    // Afterwards the node still takes deploys, with no lock stuck.
    let agent = Agent::start(&root, &[]);
    let out = agent
        .silver()
        .arg("deploy")
        .arg(&archives[0])
        .arg("--no-wait")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    fsck(&root);
}
