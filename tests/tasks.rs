//! Tasks end to end on a real agent: an app queues deferred internal requests through its
//! socket (`silversupport.tasks.add`), the node runs them on the live release with marks no
//! client can forge, retries them with backoff, keeps the dead ones for `silver tasks retry` and
//! `drop`, deduplicates by key, refuses tasks past the queue's size, and loses none to `kill -9`.

mod common;

use std::time::Duration;

use common::{eventually, get, request, wsgi_app, Agent};

const APP: &str = r#"
import json, os, urllib.parse
import silversupport.tasks as tasks

LOG = os.environ.get("TASK_LOG") or os.path.join(os.environ["HOME"], "task-log")

def answer(start_response, status, text):
    start_response(status, [("Content-Type", "text/plain")])
    return [text.encode()]

def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/enqueue":
        extra = {k: q[k] for k in ("key",) if k in q}
        if "delay" in q:
            extra["delay"] = float(q["delay"])
        try:
            id = tasks.add(q["to"], body=q.get("body", "").encode() + b"\x00\xff", **extra)
        except tasks.QueueFull as e:
            return answer(start_response, "429 Too Many Requests", "full: %s" % e)
        except tasks.TaskError as e:
            return answer(start_response, "502 Bad Gateway", "refused: %s" % e)
        return answer(start_response, "200 OK", id)
    task = environ.get("silver.task")
    if not task:
        return answer(start_response, "403 Forbidden", "not a task")
    attempt = environ["silver.task_attempt"]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    with open(LOG, "a") as f:
        line = {"path": path, "task": task, "attempt": attempt, "body": body.hex(),
                "release": os.environ["SILVER_RELEASE"]}
        f.write(json.dumps(line) + "\n")
    if path == "/flaky" and attempt < 3:
        return answer(start_response, "500 Internal Server Error", "not yet")
    if path == "/fails":
        return answer(start_response, "503 Service Unavailable", "never")
    return answer(start_response, "200 OK", "done")
"#;

const INI: &str = "default_location = tasks.test\ntask_attempts = 3\ntask_queue_size = 30\n";

/// The tasks the app has run so far, each a line of its log.
fn ran(agent: &Agent) -> Vec<serde_json::Value> {
    let log = agent.root.join("apps/tasky/data/task-log");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn runs_of<'a>(ran: &'a [serde_json::Value], id: &str) -> Vec<&'a serde_json::Value> {
    ran.iter().filter(|r| r["task"] == id).collect()
}

fn enqueue(agent: &Agent, query: &str) -> (u16, String) {
    let got = get(&agent.front, "tasks.test", &format!("/enqueue?{query}"));
    (got.status, got.body)
}

fn tasks(agent: &Agent) -> serde_json::Value {
    agent.json(&["tasks", "tasky"])
}

fn silver_tasks(agent: &Agent, words: &[&str]) -> serde_json::Value {
    agent.json(&[&["tasks"][..], words].concat())
}

#[test]
fn tasks_run_retry_die_dedupe_fill_up_and_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("tasky");
    wsgi_app(&app, "tasky", INI, APP);
    agent.deployed(&tmp.path().join("cache"), &app, &[]);

    // A client cannot pass for the queue: the router drops the marks.
    let forged = request(
        &agent.front,
        "POST",
        "tasks.test",
        "/work",
        "X-Silver-Internal: task\r\nX-Silver-Task: 1\r\nContent-Length: 0\r\n",
    );
    assert_eq!(forged.status, 403, "{forged:?}");

    // A task runs once, with its body, marked as a task; its key dedupes a second add.
    let (status, id) = enqueue(&agent, "to=/work&body=hello&key=order-42");
    assert_eq!(status, 200, "{id}");
    eventually(Duration::from_secs(20), "the task ran", || {
        (!runs_of(&ran(&agent), &id).is_empty())
            .then_some(())
            .ok_or_else(|| format!("{:?}", ran(&agent)))
    });
    let (_, again) = enqueue(&agent, "to=/work&body=hello&key=order-42");
    assert_eq!(again, id, "the key names the first task");
    let runs = ran(&agent);
    let first = runs_of(&runs, &id);
    assert_eq!(first.len(), 1, "{runs:?}");
    assert_eq!(first[0]["body"], hex("hello\0\u{ff}"), "{runs:?}");
    assert_eq!(first[0]["attempt"], 1);

    // A task that fails twice, then succeeds: retried after 1 s, then 2 s.
    let (_, flaky) = enqueue(&agent, "to=/flaky");
    eventually(Duration::from_secs(30), "the flaky task succeeded", || {
        (runs_of(&ran(&agent), &flaky).len() == 3)
            .then_some(())
            .ok_or_else(|| format!("{:?}", ran(&agent)))
    });

    // One that always fails is dead after `task_attempts` (3), shown with its last error;
    // retried, it runs again; dropped, it is gone.
    let (_, fails) = enqueue(&agent, "to=/fails");
    let dead = eventually(Duration::from_secs(30), "the task is dead", || {
        let list = tasks(&agent);
        match list["dead"] == 1 {
            true => Ok(list),
            false => Err(list.to_string()),
        }
    });
    let shown = &dead["tasks"][0];
    assert_eq!(shown["id"], fails.as_str(), "{dead}");
    assert_eq!(
        (shown["state"].as_str(), shown["attempts"].as_u64()),
        (Some("dead"), Some(3))
    );
    assert_eq!(shown["last_error"], "503", "{dead}");
    let retried = silver_tasks(&agent, &["retry", "tasky", &fails]);
    assert_eq!(retried, serde_json::json!([fails]));
    eventually(
        Duration::from_secs(30),
        "the retried task is dead again",
        || {
            let dead_again = tasks(&agent)["dead"] == 1;
            (dead_again && runs_of(&ran(&agent), &fails).len() == 6)
                .then_some(())
                .ok_or_else(|| format!("{:?}", ran(&agent)))
        },
    );
    let dropped = silver_tasks(&agent, &["drop", "tasky", "dead"]);
    assert_eq!(dropped, serde_json::json!([fails]));
    assert_eq!(tasks(&agent)["dead"], 0);

    // A full queue refuses the next task with a clear status; nothing is half-added.
    let mut queued = Vec::new();
    let refused = loop {
        let (status, said) = enqueue(&agent, "to=/work&delay=3600");
        if status != 200 {
            break said;
        }
        queued.push(said);
        assert!(queued.len() <= 30, "the queue took more than its size");
    };
    assert_eq!(queued.len(), 30);
    assert!(
        refused.contains("the queue is full (30 tasks, `task_queue_size`)"),
        "{refused}"
    );
    let mut words = vec!["drop", "tasky"];
    words.extend(queued.iter().map(String::as_str));
    assert_eq!(silver_tasks(&agent, &words).as_array().unwrap().len(), 30);

    // Tasks run on the live release: after a deploy, the new one.
    let before = ran(&agent)[0]["release"].clone();
    wsgi_app(&app, "tasky", &format!("{INI}[variables]\nV = 2\n"), APP);
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    let (_, after) = enqueue(&agent, "to=/work");
    let runs = eventually(Duration::from_secs(20), "the task ran", || {
        let runs = ran(&agent);
        match runs_of(&runs, &after).first() {
            Some(run) => Ok(run["release"].clone()),
            None => Err(format!("{runs:?}")),
        }
    });
    assert_ne!(runs, before);

    // Queued durably before the add returns: a kill -9 right after loses nothing.
    let (_, late) = enqueue(&agent, "to=/work&delay=1&body=late");
    agent = restart(agent);
    eventually(
        Duration::from_secs(30),
        "the task ran after the restart",
        || {
            (runs_of(&ran(&agent), &late).len() == 1)
                .then_some(())
                .ok_or_else(|| format!("{:?}", ran(&agent)))
        },
    );
    assert_eq!(tasks(&agent)["queued"], 0);
}

fn hex(text: &str) -> String {
    let bytes: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Kills the agent (SIGKILL) and starts another over the same root.
fn restart(mut agent: Agent) -> Agent {
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let args: Vec<String> = agent.args.clone();
    let root = agent.root.clone();
    // The old handle's drop would remove the node's app users, which the node keeps.
    std::mem::forget(agent);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start(&root, &args)
}

/// Two nodes whose app has a shared PostgreSQL: tasks queue there, a key dedupes across the
/// fleet, and tasks queued on a node that is then killed (`kill -9`) all run on the other.
#[test]
#[ignore = "system tier (PostgreSQL, gunicorn): cargo test -- --include-ignored"]
fn a_fleets_tasks_live_in_its_shared_postgresql_and_outlive_a_dead_node() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let pg = common::servers::Cluster::start(tmp.path());
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Over TLS, the server's certificate checked against a root of the operator's.
    let root = pg.enable_tls();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.admin_url(),
        root.display()
    );
    let log = shared.join("task-log");
    // Each node's app is its own user: both append to it.
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let ini = format!(
        "default_location = tasks.test\nshared_database = SHARED_DB\n\
         [variables]\nSHARED_DB = {}\nTASK_LOG = {}\n",
        url,
        log.display()
    );
    let app = tmp.path().join("tasky");
    wsgi_app(&app, "tasky", &ini, APP);
    let mut nodes: Vec<Agent> = ["a", "b"]
        .iter()
        .map(|n| {
            let agent = Agent::start(&tmp.path().join(n).join("node"), &[]);
            agent.deployed(&tmp.path().join(format!("cache-{n}")), &app, &[]);
            agent
        })
        .collect();
    let ran = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // A key dedupes across nodes.
    let (status, first) = enqueue(&nodes[0], "to=/work&key=once&delay=1");
    assert_eq!(status, 200, "{first}");
    let (_, again) = enqueue(&nodes[1], "to=/work&key=once");
    assert_eq!(again, first);
    // Tasks queued on a, which dies before they are due, all run on b.
    let ids: Vec<String> = (0..20)
        .map(|_| enqueue(&nodes[0], "to=/work&delay=5").1)
        .collect();
    let mut a = nodes.remove(0);
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    std::mem::forget(a); // its app users stay with the node's root
    let b = &nodes[0];
    eventually(Duration::from_secs(60), "every task run", || {
        let runs = ran();
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| runs_of(&runs, id).is_empty())
            .collect();
        missing
            .is_empty()
            .then_some(())
            .ok_or(format!("{missing:?}"))
    });
    let list = tasks(b);
    assert_eq!(
        (list["queued"].as_u64(), list["dead"].as_u64()),
        (Some(0), Some(0)),
        "{list}"
    );
    assert!(
        list["store"]
            .as_str()
            .unwrap()
            .starts_with("PostgreSQL at 127.0.0.1:"),
        "{list}"
    );
    assert_eq!(runs_of(&ran(), &first).len(), 1);
}
