//! Fleet deploys over real agents on loopback, with faults injected one at a time: a node
//! that fails its health check in prepare, 5xx during observe, a coordinator killed after the
//! commit, and a node killed during the commit.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, get, stderr, wsgi_app, Agent};
use serde_json::Value;

const TOKEN: &str = "fleet-test-token-0123456789abcdef";

/// A WSGI app that says its version; `/` answers 500 when the node's config sets BROKEN (a
/// failing health check on that node alone) or the version is `bad` (5xx under traffic, while
/// `/health` still passes).
fn app(dir: &Path, version: &str) {
    let code = format!(
        r#"import os
def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health" and not os.environ.get("BROKEN"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if os.environ.get("BROKEN") or "{version}" == "bad":
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"broken"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"version {version}"]
"#
    );
    wsgi_app(
        dir,
        "fleet",
        "default_location = fleet.test\nhealth_check = /health\nhealth_timeout = 3\n",
        &code,
    );
}

struct Fleet {
    tmp: tempfile::TempDir,
    agents: Vec<Agent>,
    inventory: PathBuf,
}

impl Fleet {
    fn start(hosts: usize, rollout: &str) -> Fleet {
        let tmp = tempfile::tempdir().unwrap();
        let agents: Vec<Agent> = (0..hosts)
            .map(|i| start_agent(&tmp.path().join(format!("node{i}"))))
            .collect();
        let inventory = tmp.path().join("fleet.toml");
        let hosts: Vec<String> = agents.iter().map(|a| format!("\"{}\"", a.url)).collect();
        std::fs::write(tmp.path().join("token"), TOKEN).unwrap();
        set_private(&tmp.path().join("token"));
        std::fs::write(
            &inventory,
            format!(
                "[environments.production]\nhosts = [{}]\ntoken_file = \"token\"\n{rollout}\n",
                hosts.join(", ")
            ),
        )
        .unwrap();
        Fleet {
            tmp,
            agents,
            inventory,
        }
    }

    fn silver(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("silver"));
        cmd.env("NO_COLOR", "1")
            .env_remove("SILVER_TOKEN")
            .arg("fleet");
        cmd
    }

    fn deploy(&self, app_dir: &Path) -> (bool, Value, String) {
        let out = self
            .silver()
            .args(["deploy"])
            .arg(app_dir)
            .args(["--env", "production", "--json", "--inventory"])
            .arg(&self.inventory)
            .output()
            .unwrap();
        let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.success(), report, stderr(&out))
    }

    /// Deploys the first release with `observe = 1` and no other change to the rollout, so a
    /// test's own rollout applies only to the deploy it is about.
    fn first_release(&self, version: &str) {
        let dir = self.tmp.path().join(format!("first-{version}"));
        app(&dir, version);
        let text = std::fs::read_to_string(&self.inventory).unwrap();
        let rollout = regex_lite::Regex::new(r"(?m)^(observe|wait|confirm_within) = \d+$").unwrap();
        let quick = self.inventory.with_file_name("quick.toml");
        std::fs::write(
            &quick,
            rollout.replace_all(&text, "").to_string() + "observe = 1\n",
        )
        .unwrap();
        let out = self
            .silver()
            .arg("deploy")
            .arg(&dir)
            .args(["--env", "production", "--inventory"])
            .arg(&quick)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// A coordinator running `silver fleet deploy DIR` in the background.
    fn spawn_deploy(&self, dir: &Path) -> std::process::Child {
        self.silver()
            .arg("deploy")
            .arg(dir)
            .args(["--env", "production", "--json", "--inventory"])
            .arg(&self.inventory)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until every node reports `phases` (one per node, in order).
    fn wait_for_phases(&self, what: &str, phases: &[&str]) {
        eventually(Duration::from_secs(60), what, || {
            let p = self.phases();
            if p == phases {
                Ok(())
            } else {
                Err(format!("{p:?}"))
            }
        });
    }

    fn versions(&self) -> Vec<String> {
        self.agents
            .iter()
            .map(|a| get(&a.front, "fleet.test", "/").body)
            .collect()
    }

    fn phases(&self) -> Vec<String> {
        self.agents
            .iter()
            .map(|a| {
                let (status, body) =
                    common::http(&a.url, "GET", "/v1/apps/fleet/fleet", Some(TOKEN), b"");
                if status != 200 {
                    return format!("http {status}");
                }
                let v: Value = serde_json::from_str(&body).unwrap();
                v["phase"].as_str().unwrap_or("").to_string()
            })
            .collect()
    }
}

fn start_agent(root: &Path) -> Agent {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("token"), TOKEN).unwrap();
    set_private(&root.join("token"));
    Agent::start(root, &[])
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn all(values: &[String], expected: &str) -> bool {
    values.iter().all(|v| v == expected)
}

#[test]
fn a_fleet_deploy_prepares_everywhere_then_flips_together_and_a_bad_node_stops_it() {
    let fleet = Fleet::start(3, "observe = 1\nconfirm_within = 60\n");
    let v1 = fleet.tmp.path().join("v1");
    app(&v1, "one");
    let (ok, report, err) = fleet.deploy(&v1);
    assert!(ok, "{err}\n{report}");
    assert_eq!(report["outcome"], "confirmed");
    assert!(report["skew_ms"].as_u64().is_some(), "{report}");
    assert!(
        all(&fleet.versions(), "version one"),
        "{:?}",
        fleet.versions()
    );

    // One node's config breaks its health check (its restart with it fails, and the running
    // release keeps serving): a fleet deploy's prepare fails there, and no node flips.
    let out = fleet.agents[1]
        .silver()
        .args(["config", "set", "fleet", "BROKEN=1"])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("is stored"), "{}", stderr(&out));
    let v2 = fleet.tmp.path().join("v2");
    app(&v2, "two");
    let (ok, report, err) = fleet.deploy(&v2);
    assert!(!ok, "{report}");
    assert_eq!(report["outcome"], "aborted", "{err}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("failed to prepare"),
        "{report}"
    );
    assert!(
        report["hosts"][1]["error"]
            .as_str()
            .unwrap()
            .contains("health check"),
        "{report}"
    );
    assert!(
        all(&fleet.versions(), "version one"),
        "{:?}",
        fleet.versions()
    );
    assert!(
        report["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["committed_ms"].is_null()),
        "{report}"
    );

    // Fixed, the same deploy goes through.
    let out = fleet.agents[1]
        .silver()
        .args(["config", "unset", "fleet", "BROKEN"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (ok, report, err) = fleet.deploy(&v2);
    assert!(ok, "{err}\n{report}");
    assert!(
        all(&fleet.versions(), "version two"),
        "{:?}",
        fleet.versions()
    );
}

#[test]
fn five_hundreds_during_observe_revert_the_whole_fleet() {
    let fleet = Fleet::start(2, "observe = 20\nconfirm_within = 60\nmin_requests = 5\n");
    fleet.first_release("one");
    let bad = fleet.tmp.path().join("bad");
    app(&bad, "bad");
    let mut coordinator = fleet.spawn_deploy(&bad);
    eventually(
        Duration::from_secs(60),
        "the fleet committed and answers 500",
        || {
            let v = fleet.versions();
            if all(&v, "broken") {
                Ok(())
            } else {
                Err(format!("{v:?}"))
            }
        },
    );
    // Traffic while it observes: the new release answers 500.
    let done = eventually(Duration::from_secs(60), "the coordinator aborts", || {
        for _ in 0..10 {
            for a in &fleet.agents {
                get(&a.front, "fleet.test", "/");
            }
        }
        coordinator
            .try_wait()
            .unwrap()
            .ok_or_else(|| "still running".to_string())
    });
    let out = coordinator.wait_with_output().unwrap();
    assert!(!done.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "aborted", "{report}");
    assert!(
        report["reason"].as_str().unwrap().contains("with 5xx"),
        "{report}"
    );
    assert!(
        all(&fleet.versions(), "version one"),
        "{:?}",
        fleet.versions()
    );
}

#[test]
fn a_coordinator_killed_after_the_commit_leaves_every_node_to_revert_by_itself() {
    let fleet = Fleet::start(3, "observe = 300\nconfirm_within = 4\n");
    fleet.first_release("one");
    let v2 = fleet.tmp.path().join("v2");
    app(&v2, "two");
    let mut coordinator = fleet.spawn_deploy(&v2);
    fleet.wait_for_phases("every node committed", &["committed"; 3]);
    assert!(all(&fleet.versions(), "version two"));
    coordinator.kill().unwrap(); // SIGKILL: no abort is sent
    coordinator.wait().unwrap();
    eventually(
        Duration::from_secs(30),
        "every node reverted by itself",
        || {
            let p = fleet.phases();
            if all(&p, "aborted") {
                Ok(())
            } else {
                Err(format!("{p:?}"))
            }
        },
    );
    assert!(
        all(&fleet.versions(), "version one"),
        "{:?}",
        fleet.versions()
    );
}

#[test]
fn a_node_killed_during_the_commit_comes_back_on_the_old_release_and_the_others_revert() {
    let mut fleet = Fleet::start(3, "observe = 300\nconfirm_within = 120\n");
    fleet.first_release("one");
    let v2 = fleet.tmp.path().join("v2");
    app(&v2, "two");
    let coordinator = fleet.spawn_deploy(&v2);
    fleet.wait_for_phases("every node committed", &["committed"; 3]);
    // kill -9 one agent while the deploy is committed and unconfirmed.
    let mut victim = fleet.agents.remove(1);
    let root = victim.root.clone();
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    drop(victim);
    let out = coordinator.wait_with_output().unwrap();
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "aborted", "{report}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("stopped answering"),
        "{report}"
    );
    assert!(
        all(&fleet.versions(), "version one"),
        "{:?}",
        fleet.versions()
    );
    // Restarted, the killed node undoes the commit it never heard confirmed.
    let back = Agent::start(&root, &[]);
    eventually(
        Duration::from_secs(30),
        "the restarted node serves the old release",
        || {
            let body = get(&back.front, "fleet.test", "/").body;
            if body == "version one" {
                Ok(())
            } else {
                Err(body)
            }
        },
    );
    let (_, body) = common::http(&back.url, "GET", "/v1/apps/fleet/fleet", Some(TOKEN), b"");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["phase"], "aborted", "{status}");
}

#[test]
fn an_aborted_fleet_deploy_puts_back_the_data_its_migration_changed() {
    // The hosts share the database the migration changes: it runs on the first alone.
    let fleet = Fleet::start(2, "observe = 1\nconfirm_within = 60\nmigrate = \"once\"\n");
    let migrating = |dir: &Path, version: &str| {
        app(dir, version);
        let ini = std::fs::read_to_string(dir.join("app.ini")).unwrap();
        std::fs::write(
            dir.join("app.ini"),
            format!("{ini}service.files =\nupdate_fetch = script: echo {version} > \"$CONFIG_FILES/schema\"\n"),
        )
        .unwrap();
    };
    let v1 = fleet.tmp.path().join("v1");
    migrating(&v1, "one");
    let (ok, report, err) = fleet.deploy(&v1);
    assert!(ok, "{err}\n{report}");
    let schema = |i: usize| {
        std::fs::read_to_string(fleet.agents[i].root.join("apps/fleet/files/schema"))
            .unwrap_or_default()
    };
    // Migrations run once: on the first host alone.
    assert_eq!((schema(0).as_str(), schema(1).as_str()), ("one\n", ""));

    // The second host cannot start the new release; the first already migrated for it.
    let out = fleet.agents[1]
        .silver()
        .args(["config", "set", "fleet", "BROKEN=1"])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("is stored"), "{}", stderr(&out));
    let v2 = fleet.tmp.path().join("v2");
    migrating(&v2, "two");
    let (ok, report, _) = fleet.deploy(&v2);
    assert!(!ok && report["outcome"] == "aborted", "{report}");
    assert_eq!(
        schema(0),
        "one\n",
        "the checkpoint taken before update_fetch was not put back"
    );
    assert!(
        all(&fleet.versions(), "version one"),
        "{:?}",
        fleet.versions()
    );
}

/// Two hosts on their first release; a deploy of the second, one host per batch with a long
/// wait between, whose coordinator is SIGKILLed once the first batch committed.
fn coordinator_killed_between_batches() -> (Fleet, PathBuf) {
    let fleet = Fleet::start(
        2,
        "batch = 1\nwait = 120\nobserve = 1\nconfirm_within = 300\n",
    );
    fleet.first_release("one");
    let v2 = fleet.tmp.path().join("v2");
    app(&v2, "two");
    let mut coordinator = fleet.spawn_deploy(&v2);
    fleet.wait_for_phases("the first batch committed", &["committed", "prepared"]);
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    (fleet, v2)
}

#[test]
fn any_client_resumes_a_deploy_whose_coordinator_died_between_batches() {
    let (fleet, _) = coordinator_killed_between_batches();
    // Another client sees where it stopped, and finishes it.
    let quick = fleet.inventory.with_file_name("quick.toml");
    let out = fleet
        .silver()
        .args(["status", "fleet", "--env", "production", "--inventory"])
        .arg(&quick)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("committed") && table.contains("prepared"),
        "{table}"
    );
    let out = fleet
        .silver()
        .args(["resume", "fleet", "--env", "production", "--inventory"])
        .arg(&quick)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(all(&fleet.phases(), "confirmed"), "{:?}", fleet.phases());
    assert!(
        all(&fleet.versions(), "version two"),
        "{:?}",
        fleet.versions()
    );
}

#[test]
fn any_client_aborts_a_deploy_whose_coordinator_died() {
    let (fleet, v2) = coordinator_killed_between_batches();
    assert_eq!(fleet.versions(), ["version two", "version one"]);
    let out = fleet
        .silver()
        .args([
            "abort",
            "fleet",
            "--env",
            "production",
            "--json",
            "--inventory",
        ])
        .arg(&fleet.inventory)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let phases: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"]["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["aborted", "aborted"], "{rows}");
    assert!(
        all(&fleet.versions(), "version one"),
        "{:?}",
        fleet.versions()
    );
    // The node's own lock went with the deploy: a plain deploy goes through.
    let out = fleet.agents[0]
        .silver()
        .arg("deploy")
        .arg(&v2)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
