//! `[cron]` end to end on a real agent: scheduled internal requests only the node can make,
//! retries, deadlines that kill a command's whole process group, overlapping runs skipped and
//! recorded, and a job table that follows deploys and rollbacks.

mod common;

use std::time::Duration;

use common::{eventually, get, request, stdout, wsgi_app, Agent};

const APP: &str = r#"
import os

def application(environ, start_response):
    # Only the node's cron marks a request as a job's; the router drops X-Silver-* from clients.
    job = environ.get("silver.cron")
    if environ["PATH_INFO"] == "/tick" and job:
        with open(os.path.join(os.environ["TMPDIR"], "ticks"), "a") as f:
            f.write(job + "\n")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ticked"]
    start_response("403 Forbidden", [("Content-Type", "text/plain")])
    return [b"not cron"]
"#;

fn cron_ini(jobs: &str) -> String {
    format!("default_location = cron.test\n[cron]\n{jobs}")
}

const JOBS_V1: &str = "tick = * * * * * /tick\n\
    flaky = @yearly script:n=$(cat $TMPDIR/flaky 2>/dev/null || echo 0); n=$((n+1)); echo $n > $TMPDIR/flaky; echo attempt $n; [ $n -ge 3 ]\n\
    flaky.retries = 2\n\
    hang = @yearly script:sleep 97; echo never\n\
    hang.deadline = 1\n\
    slow = @yearly script:touch $TMPDIR/slow-started; sleep 2; echo slept\n";

fn jobs(agent: &Agent) -> serde_json::Value {
    agent.json(&["cron", "crony"])
}

fn job<'a>(jobs: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    jobs.as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {jobs}"))
}

fn run_job(agent: &Agent, name: &str) -> (bool, serde_json::Value) {
    let out = agent
        .silver()
        .args(["cron", "run", "crony", name, "--json"])
        .output()
        .unwrap();
    (
        out.status.success(),
        serde_json::from_str(&stdout(&out)).unwrap(),
    )
}

#[test]
fn cron_jobs_run_retry_end_at_deadlines_skip_overlaps_and_follow_the_release() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("crony");
    wsgi_app(&app, "crony", &cron_ini(JOBS_V1), APP);
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    let app_tmp = agent.root.join("apps/crony/tmp");

    // A client cannot pass for cron: the router drops the mark.
    let forged = request(
        &agent.front,
        "GET",
        "cron.test",
        "/tick",
        "X-Silver-Cron: tick\r\nX-Silver-Internal: cron\r\n",
    );
    assert_eq!(forged.status, 403, "{forged:?}");

    // A job that fails twice, then succeeds: retried after 5 s, then 10 s.
    let (ok, runs) = run_job(&agent, "flaky");
    assert!(ok, "{runs}");
    let outcomes: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["exit 1", "exit 1", "exit 0"], "{runs}");
    assert!(
        runs[2]["tail"].as_str().unwrap().contains("attempt 3"),
        "{runs}"
    );

    // A job past its deadline is killed with its process group (the shell and its sleep).
    let (ok, runs) = run_job(&agent, "hang");
    assert!(!ok);
    assert_eq!(
        runs[0]["outcome"], "deadline (1 s) passed; killed",
        "{runs}"
    );
    eventually(
        Duration::from_secs(10),
        "the hung job's processes gone",
        || {
            let out = std::process::Command::new("pgrep")
                .args(["-f", "sleep 97"])
                .output()
                .unwrap();
            match stdout(&out).trim().is_empty() {
                true => Ok(()),
                false => Err(stdout(&out)),
            }
        },
    );

    // A run while the previous one still goes is skipped, and recorded as such.
    let mut first = agent.spawn_silver();
    let first = first
        .args(["cron", "run", "crony", "slow"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "slow started", || {
        app_tmp
            .join("slow-started")
            .exists()
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    let (ok, runs) = run_job(&agent, "slow");
    assert!(!ok);
    assert_eq!(
        runs[0]["outcome"], "skipped: the previous run still goes",
        "{runs}"
    );
    assert!(first.wait_with_output().unwrap().status.success());

    // The scheduled job runs within a minute, as an internal request the app sees as cron's.
    eventually(Duration::from_secs(75), "a scheduled tick", || {
        let listed = jobs(&agent);
        let tick = job(&listed, "tick");
        match tick["last"]["ok"] == true && tick["last"]["why"] == "scheduled" {
            true => Ok(()),
            false => Err(tick.to_string()),
        }
    });
    let ticks = std::fs::read_to_string(app_tmp.join("ticks")).unwrap();
    assert!(ticks.starts_with("tick\n"), "{ticks}");
    // The status page alerts on the job that failed.
    eventually(Duration::from_secs(30), "the cron alert", || {
        let out = agent.silver().args(["status", "--json"]).output().unwrap();
        let text = stdout(&out);
        match text.contains("cron job hang of crony failed its last run") {
            true => Ok(()),
            false => Err(text),
        }
    });
    let listed = jobs(&agent);
    assert_eq!(job(&listed, "flaky")["failing"], 0, "{listed}");
    assert_eq!(job(&listed, "hang")["failing"], 1, "{listed}");
    assert!(job(&listed, "tick")["next"].is_string(), "{listed}");

    // A deploy swaps the table with the release; a rollback puts it back.
    wsgi_app(
        &app,
        "crony",
        &cron_ini("report = @daily script:echo report\n"),
        APP,
    );
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    assert_eq!(names(&jobs(&agent)), ["report"]);
    let out = agent.silver().args(["rollback", "crony"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(names(&jobs(&agent)), ["tick", "flaky", "hang", "slow"]);
    assert_eq!(get(&agent.front, "cron.test", "/").status, 403);
}

fn names(jobs: &serde_json::Value) -> Vec<String> {
    jobs.as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_bad_cron_line_is_refused_when_packed_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("crony");
    wsgi_app(&app, "crony", &cron_ini("tick = 61 * * * * /tick\n"), APP);
    let out = common::silver()
        .args([
            "pack",
            app.to_str().unwrap(),
            "--out-dir",
            tmp.path().join("out").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("app.ini:") && err.contains("cron job `tick`: `61 * * * *` is not a schedule"),
        "{err}"
    );
}

const FLEET_APP: &str = r#"
import os, time

def application(environ, start_response):
    job = environ.get("silver.cron")
    if job:
        # One line as the run starts and one as it ends, naming the node (its app directory).
        node = os.environ["HOME"].split(os.sep)[-5]  # …/a/node/apps/fleety/data
        minute = environ["silver.cron_tick"][11:16]  # the tick's, as every node names it
        with open(os.environ["TICKS"], "a") as f:
            f.write("%s %s start %s\n" % (minute, job, node))
        if job == "tick":
            time.sleep(8)
        with open(os.environ["TICKS"], "a") as f:
            f.write("%s %s end %s\n" % (minute, job, node))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"#;

/// Two nodes with the app's shared PostgreSQL: each tick of a job runs on exactly one of them,
/// a job with `every_node` on both, and when the node running a tick is killed (`kill -9`) the
/// other runs that tick and the next ones.
#[test]
#[ignore = "system tier (PostgreSQL, gunicorn; about 3 minutes): cargo test -- --include-ignored"]
fn a_fleet_on_a_shared_postgresql_runs_each_tick_once_even_when_a_node_dies() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let pg = common::servers::Cluster::start(tmp.path());
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ticks = shared.join("ticks");
    // Each node's app is its own user: both must append to it.
    std::fs::write(&ticks, "").unwrap();
    std::fs::set_permissions(&ticks, std::fs::Permissions::from_mode(0o666)).unwrap();
    let ini = format!(
        "default_location = fleet.test\nshared_database = SHARED_DB\n\
         [variables]\nSHARED_DB = {}\nTICKS = {}\n\
         [cron]\ntick = * * * * * /tick\neach = * * * * * /each\neach.every_node = true\n",
        pg.admin_url(),
        ticks.display()
    );
    let app = tmp.path().join("fleety");
    wsgi_app(&app, "fleety", &ini, FLEET_APP);
    let mut nodes: Vec<Option<Agent>> = ["a", "b"]
        .iter()
        .map(|n| {
            let agent = Agent::start(&tmp.path().join(n).join("node"), &[]);
            agent.deployed(&tmp.path().join(format!("cache-{n}")), &app, &[]);
            Some(agent)
        })
        .collect();
    let lines = || std::fs::read_to_string(&ticks).unwrap_or_default();
    let of = |text: &str, minute: &str, what: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(minute) && l.contains(what))
            .map(String::from)
            .collect()
    };
    // The first whole minute both nodes were up for.
    let first = eventually(
        Duration::from_secs(130),
        "a tick with both nodes up",
        || {
            let text = lines();
            let minute = text
                .lines()
                .find(|l| l.contains("tick end"))
                .map(|l| l[..5].to_string());
            minute.ok_or(text)
        },
    );
    std::thread::sleep(Duration::from_secs(2)); // a duplicate would have started by now
    let cron_logs = || {
        ["a", "b"]
            .map(|n| {
                let log = tmp.path().join(n).join("node/apps/fleety/logs/cron.log");
                format!("{n}: {}", std::fs::read_to_string(log).unwrap_or_default())
            })
            .join("\n")
    };
    let text = lines();
    assert_eq!(
        of(&text, &first, "tick start").len(),
        1,
        "{text}\n{}",
        cron_logs()
    );
    assert_eq!(
        of(&text, &first, "each end").len(),
        2,
        "every_node runs on both:\n{text}\n{}",
        cron_logs()
    );

    // The next tick: kill the node running it, mid-run.
    let runner = eventually(Duration::from_secs(70), "the next tick starting", || {
        let text = lines();
        let started = text
            .lines()
            .find(|l| l.contains("tick start") && !l.starts_with(&first))
            .map(|l| l.to_string());
        started.ok_or(text)
    });
    let (second, runner_node) = (
        runner[..5].to_string(),
        runner.rsplit(' ').next().unwrap().to_string(),
    );
    let victim = if runner_node == "a" { 0 } else { 1 };
    let mut dead = nodes[victim].take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    std::mem::forget(dead); // its app users stay with the node's root
    let survivor = if victim == 0 { "b" } else { "a" };
    let done = format!("tick end {survivor}");
    eventually(
        Duration::from_secs(40),
        "the survivor running the killed node's tick",
        || {
            let text = lines();
            (!of(&text, &second, &done).is_empty())
                .then_some(())
                .ok_or(text)
        },
    );
    // And the tick after that, exactly once, there.
    let third = eventually(Duration::from_secs(70), "a tick after the kill", || {
        let text = lines();
        let after = text
            .lines()
            .find(|l| l.contains("tick end") && !l.starts_with(&first) && !l.starts_with(&second))
            .map(|l| l[..5].to_string());
        after.ok_or(text)
    });
    std::thread::sleep(Duration::from_secs(2));
    let text = lines();
    assert_eq!(
        of(&text, &third, "tick start"),
        [format!("{third} tick start {survivor}")],
        "{text}"
    );
    drop(nodes);
}
