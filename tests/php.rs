//! PHP apps end to end (`platform = php`): real agents, Debian's php-fpm, requests through the
//! real front door. System tier: they need php-fpm (`scripts/install-deps.sh`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn deployed(agent: &Agent, tmp: &Path, app: &Path) -> String {
    agent.deployed(&tmp.join("cache"), app, &[])
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Silver Lining's `docs/examples/simple-php`, as it was: no `platform` line (its runner is a
/// `.php` file), `service.php`, `<?` short tags.
fn simple_php(dir: &Path) {
    std::fs::create_dir_all(dir.join("example")).unwrap();
    std::fs::write(
        dir.join("app.ini"),
        "[production]\napp_name = example-php\nrunner = example/runner.php\nphp_root = example/\n\
         default_host = example-php.example.com\nservice.php =\n;update_fetch = /.internal/update\n\
         ;packages = mercurial\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("example/runner.php"),
        "<?\n// here you can do anything!\n\nphpinfo();\n\n?>",
    )
    .unwrap();
}

#[test]
#[ignore = "system tier (php-fpm): cargo test -- --include-ignored"]
fn silver_linings_simple_php_example_serves_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("simple-php");
    simple_php(&app);
    std::fs::write(app.join("example/hello.txt"), "hello static\n").unwrap();
    deployed(&agent, tmp.path(), &app);
    let page = get(&agent.front, "example-php.example.com", "/");
    assert_eq!(
        page.status,
        200,
        "{}",
        &page.body[..page.body.len().min(500)]
    );
    assert!(page.body.contains("FPM/FastCGI"), "not php-fpm's phpinfo()");
    // Files under php_root that are not PHP are served as they are, by the router.
    let file = get(&agent.front, "example-php.example.com", "/hello.txt");
    assert_eq!(file.body, "hello static\n");
    // The source of a .php file never is: it runs (here through the runner).
    let code = get(&agent.front, "example-php.example.com", "/runner.php");
    assert!(
        !code.body.contains("here you can do anything"),
        "{}",
        code.body
    );
}

const CONTRACT_RUNNER: &str = r#"<?php
// Tasks: queued with silver_task_add, run as the queue's requests (each leaves a file).
if ($_SERVER['SCRIPT_NAME'] === '/blog/enqueue') { echo silver_task_add('/task', ['body' => "hi\0"]); exit; }
if (($_SERVER['SILVER_TASK'] ?? '') !== '') {
  file_put_contents(sys_get_temp_dir() . '/task-' . $_SERVER['SILVER_TASK'], file_get_contents('php://input'));
  exit;
}
// Wedges that say when they have started (in the app's tmp/), for the test to hang up then.
$wedges = ['/blog/busy' => 'busy', '/blog/lock' => 'lock', '/blog/stuck' => 'stuck'];
$wedge = $wedges[$_SERVER['SCRIPT_NAME']] ?? null;
if ($wedge) { touch(sys_get_temp_dir() . "/$wedge-started"); }
// Stuck even once stopped: its shutdown function loops too.
if ($wedge === 'stuck') { register_shutdown_function(function () { while (true) {} }); }
if ($wedge === 'busy' || $wedge === 'stuck') { while (true) {} }
if ($wedge === 'lock') {
  // Taken twice: flock locks belong to an open file, so the second open waits on the first.
  $a = fopen(sys_get_temp_dir() . '/lock', 'c'); flock($a, LOCK_EX);
  $b = fopen(sys_get_temp_dir() . '/lock', 'c'); flock($b, LOCK_EX);
}
$path = silver_call_next("{$silver_base}/site/index.php");
include $path;
"#;

const CONTRACT_INDEX: &str = r#"<?php
header('Content-Type: application/json');
echo json_encode([
  'script_name' => $_SERVER['SCRIPT_NAME'],
  'match_path' => $_SERVER['SILVER_MATCH_PATH'],
  'app' => $_SERVER['SILVER_APP_NAME'] ?? null,
  'version' => $_SERVER['VERSION'] ?? null,
  'getenv' => getenv('VERSION'),
  'secret_len' => defined('SILVER_SECRET') ? strlen(SILVER_SECRET) : -1,
  'cwd' => getcwd(),
  'internal' => $_SERVER['SILVER_INTERNAL'] ?? null,
  'cron' => $_SERVER['SILVER_CRON'] ?? null,
  'memory_limit' => ini_get('memory_limit'),
  'file' => __FILE__,
]);
"#;

fn contract_app(dir: &Path, version: u32) {
    std::fs::create_dir_all(dir.join("site/sub")).unwrap();
    std::fs::write(
        dir.join("app.ini"),
        format!(
            "[production]\napp_name = contract\nplatform = php\nphp_root = site/\n\
             runner = site/runner.php\ndefault_location = php.localhost/blog\n\
             php.memory_limit = 96M\n[variables]\nVERSION = {version}\n\
             [cron]\nping = @yearly /\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("site/runner.php"), CONTRACT_RUNNER).unwrap();
    std::fs::write(dir.join("site/index.php"), CONTRACT_INDEX).unwrap();
    std::fs::write(
        dir.join("site/sub/index.php"),
        "<?php echo 'sub in ', basename(getcwd());",
    )
    .unwrap();
    std::fs::write(dir.join("site/.htaccess"), "Deny from all\n").unwrap();
}

#[test]
#[ignore = "system tier (php-fpm): cargo test -- --include-ignored"]
fn the_runner_contract_holds_under_a_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("contract");
    contract_app(&app, 1);
    let id = deployed(&agent, tmp.path(), &app);
    let page = get(&agent.front, "php.localhost", "/blog/");
    assert_eq!(page.status, 200, "{page:?}");
    let env = json(&page.body);
    assert_eq!(env["script_name"], "/blog/");
    assert_eq!(env["match_path"], "/blog");
    assert_eq!(env["app"], "contract");
    assert_eq!(env["version"], "1");
    assert_eq!(env["getenv"], "1");
    assert_eq!(env["secret_len"], 48);
    assert_eq!(env["internal"], serde_json::Value::Null);
    assert_eq!(env["memory_limit"], "96M");
    // Rooted at the release's real path, and run from the file's own directory.
    let release = format!("releases/{}/site", &id[3..]);
    assert!(env["cwd"].as_str().unwrap().ends_with(&release), "{env}");
    // A directory with an index.php: a redirect to the slash, then the index, run in its dir.
    let bare = get(&agent.front, "php.localhost", "/blog/sub");
    assert_eq!(bare.status, 301, "{bare:?}");
    assert_eq!(bare.header("location").as_deref(), Some("/blog/sub/"));
    assert_eq!(
        get(&agent.front, "php.localhost", "/blog/sub/").body,
        "sub in sub"
    );
    // A client cannot pose as the node (the router drops X-Silver-*).
    let forged = request(
        &agent.front,
        "GET",
        "php.localhost",
        "/blog/",
        "X-Silver-Internal: update\r\nX-Silver-Script-Name: /x\r\n",
    );
    let env = json(&forged.body);
    assert_eq!(env["internal"], serde_json::Value::Null);
    assert_eq!(env["match_path"], "/blog");
    // A [cron] job's request reaches the app through the location's prefix, marked as cron's.
    let ran = agent
        .silver()
        .args(["cron", "run", "contract", "ping", "--json"])
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    let runs = json(&stdout(&ran));
    let env = json(runs[0]["tail"].as_str().unwrap());
    assert_eq!(
        (&env["cron"], &env["internal"]),
        (&"ping".into(), &"cron".into())
    );
    assert_eq!(env["script_name"], "/blog/");
    // A task queued with silver_task_add runs, with its body, marked as the queue's.
    let id = get(&agent.front, "php.localhost", "/blog/enqueue");
    assert_eq!(id.status, 200, "{id:?}");
    let ran = agent
        .root
        .join(format!("apps/contract/tmp/task-{}", id.body));
    common::eventually(
        std::time::Duration::from_secs(20),
        "the PHP task ran",
        || std::fs::read(&ran).map_err(|e| e.to_string()),
    );
    assert_eq!(std::fs::read(&ran).unwrap(), b"hi\0");
    // Dotfiles under php_root are not served; `..` never climbs out of it.
    assert_ne!(
        get(&agent.front, "php.localhost", "/blog/.htaccess").body,
        "Deny from all\n"
    );
    let climbed = get(&agent.front, "php.localhost", "/blog/..%2fapp.ini");
    assert!(!climbed.body.contains("app_name"), "{climbed:?}");
    // The same release restarted: its new master starts beside the running one, on files of
    // its own, and takes over.
    let again = agent.deploy(&tmp.path().join("cache"), &app, &["--restart"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        json(&get(&agent.front, "php.localhost", "/blog/").body)["version"],
        "1"
    );
}

/// Sends `GET /blog/WEDGE`, hangs up once the wedge has started, and waits for the app's log to
/// say `then.0` `then.1` times in all.
fn hang_up_on(agent: &Agent, wedge: &str, then: (&str, usize)) {
    use std::io::Write;
    let addr = agent.front.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let request = format!("GET /blog/{wedge} HTTP/1.1\r\nHost: php.localhost\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let started = agent
        .root
        .join(format!("apps/contract/tmp/{wedge}-started"));
    eventually(Duration::from_secs(20), "the wedge started", || {
        started
            .exists()
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    drop(s);
    eventually(Duration::from_secs(20), then.0, || {
        let logs = agent
            .silver()
            .args(["logs", "contract", "-n", "200"])
            .output()
            .unwrap();
        let text = stdout(&logs);
        (text.matches(then.0).count() >= then.1)
            .then_some(())
            .ok_or(text)
    });
}

#[test]
#[ignore = "system tier (php-fpm): cargo test -- --include-ignored"]
fn a_dropped_php_request_ends_its_worker_and_redeploys_drop_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let dirs: Vec<_> = (1..=2)
        .map(|v| {
            let dir = tmp.path().join(format!("v{v}"));
            contract_app(&dir, v);
            dir
        })
        .collect();
    deployed(&agent, tmp.path(), &dirs[0]);

    // A wedge whose client hangs up, however soon, holds no php-fpm worker: a busy loop or a
    // lock taken twice is stopped as PHP stops one at its time limit, and a worker that does
    // not stop is ended.
    let stopped = "[silver] stopped a dropped request on php-fpm worker";
    hang_up_on(&agent, "busy", (stopped, 1));
    hang_up_on(&agent, "lock", (stopped, 2));
    hang_up_on(&agent, "stuck", ("[silver] ended php-fpm worker", 1));

    // Redeploys under load: every request answered, each by a whole release.
    let load = Load::start(&agent.front, "php.localhost", "/blog/", 4, |got| {
        got.status == 200 && got.body.contains("\"version\"")
    });
    for round in 0..3 {
        deployed(&agent, tmp.path(), &dirs[(round + 1) % 2]);
        let want = format!("{}", (round + 1) % 2 + 1);
        // Once the deploy has returned, every new request reaches the new release's master.
        let env = json(&get(&agent.front, "php.localhost", "/blog/").body);
        assert_eq!(env["version"], want.as_str());
    }
    let total = load.stop_all_good();
    assert!(total > 20, "only {total} requests");
    // The replaced releases' masters are gone: one master (and its pool) serves.
    eventually(Duration::from_secs(60), "one php-fpm master", || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", "php-fpm: master process"])
            .output()
            .unwrap();
        let masters: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.contains(&agent.root.display().to_string()))
            })
            .collect();
        match masters.len() {
            1 => Ok(()),
            n => Err(format!("{n} masters")),
        }
    });
}
