//! End-to-end deploys: real `silver agent` processes on loopback, each over its own temp root.

mod common;

use std::path::Path;

use common::{copy_fixture, http, http_with, pack_dir, redact, silver, stderr, stdout, Agent};
use serde_json::Value;

fn deploy(agent: &Agent, source: &Path, extra: &[&str]) -> Value {
    let out = agent
        .silver()
        .arg("deploy")
        .arg(source)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn releases(agent: &Agent, app: &str) -> Vec<(String, String)> {
    let out = agent
        .silver()
        .args(["releases", app, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn current(agent: &Agent, app: &str) -> String {
    let target = std::fs::read_link(agent.root.join("apps").join(app).join("current")).unwrap();
    format!("b3:{}", target.file_name().unwrap().to_str().unwrap())
}

#[test]
fn deploy_redeploy_change_rollback_activate() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);

    let first = deploy(&agent, &app, &[]);
    assert_eq!(first["objects_sent"], 5);
    let v1 = first["id"].as_str().unwrap().to_string();
    assert_eq!(current(&agent, "hello"), v1);
    let release = agent.root.join("apps/hello/current");
    assert_eq!(
        std::fs::read(release.join("app.py")).unwrap(),
        std::fs::read(app.join("app.py")).unwrap()
    );

    // The same artifact again: no file content crosses the wire, only the manifest.
    let again = deploy(&agent, &app, &[]);
    assert_eq!(
        (
            again["objects_sent"].as_u64(),
            again["objects_skipped"].as_u64()
        ),
        (Some(0), Some(5))
    );
    assert!(again["bytes_sent"].as_u64().unwrap() < 600, "{again}");

    // One changed file: about that file's size is sent.
    let mut css = std::fs::read(app.join("static/css/site.css")).unwrap();
    // Incompressible, so the bytes sent can be compared with the change's size.
    let mut x = 0x2545_f491_u32;
    css.extend((0..20_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    std::fs::write(app.join("static/css/site.css"), &css).unwrap();
    let (v2, archive) = pack_dir(&app, &tmp.path().join("dist"));
    let second = deploy(&agent, &archive, &[]);
    assert_eq!(second["objects_sent"], 1);
    let sent = second["bytes_sent"].as_u64().unwrap();
    assert!(
        sent >= css.len() as u64 && sent < css.len() as u64 + 1_000,
        "sent {sent} for a {}-byte change",
        css.len()
    );
    assert_eq!(current(&agent, "hello"), v2);
    assert_eq!(
        releases(&agent, "hello"),
        [
            (v2.clone(), "active".into()),
            (v1.clone(), "previous".into())
        ]
    );

    // Rollback without an id goes to the previous good release; activate goes anywhere staged.
    agent
        .silver()
        .args(["rollback", "hello"])
        .assert()
        .success();
    assert_eq!(current(&agent, "hello"), v1);
    agent
        .silver()
        .args(["activate", "hello", &v2])
        .assert()
        .success();
    assert_eq!(current(&agent, "hello"), v2);

    let history = std::fs::read_to_string(agent.root.join("apps/hello/history.jsonl")).unwrap();
    let actions: Vec<String> = history
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        actions,
        ["deploy", "deploy", "deploy", "rollback", "activate"]
    );
    let (status, body) = http(&agent.url, "GET", "/v1/health", None, b"");
    assert_eq!(status, 200);
    assert!(body.contains(&v2), "{body}");
}

#[test]
fn a_wrong_or_missing_token_gets_401_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let out = agent
        .silver()
        .env("SILVER_TOKEN", "not-the-token")
        .arg("deploy")
        .arg(&app)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("did not accept the credential"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("hint: set SILVER_TOKEN or --token-file"));
    for (method, path) in [
        ("POST", "/v1/artifacts/b3:00/commit"),
        ("POST", "/v1/objects"),
        ("PUT", "/v1/artifacts/b3:00"),
        ("POST", "/v1/apps/hello/deploy"),
        ("POST", "/v1/gc"),
        ("GET", "/v1/apps/hello/releases"),
    ] {
        assert_eq!(
            http(&agent.url, method, path, None, b"{}").0,
            401,
            "{method} {path} without a token"
        );
        assert_eq!(
            http(&agent.url, method, path, Some("wrong"), b"{}").0,
            401,
            "{method} {path} with a wrong token"
        );
    }
    assert!(!agent.root.join("apps/hello").exists());
    assert_eq!(
        std::fs::read_dir(agent.root.join("objects"))
            .unwrap()
            .count(),
        1,
        "only objects/tmp"
    );
}

#[test]
fn hostile_uploads_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let t = Some(agent.token.as_str());
    let hash = blake3::hash(b"hello");
    // Objects come only for a manifest the node was sent first.
    let mut good = silver_wire::frames::frame_header(hash.as_bytes(), 5).to_vec();
    good.extend_from_slice(b"hello");
    let (status, body) = http(&agent.url, "POST", "/v1/objects", t, &good);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("X-Silver-Artifact"), "{body}");
    // A manifest that names objects the node does not have: held as pending (the answer lists
    // them), and refused when committed while they are still missing.
    let manifest = format!("silver-manifest 1\nfile\tapp.py\t5\t{}\n", hash.to_hex());
    let id = expect_upload(&agent, &manifest, &[&hash.to_hex()]);
    let (status, body) = http(
        &agent.url,
        "POST",
        &format!("/v1/artifacts/{id}/commit"),
        t,
        b"",
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("does not have"), "{body}");
    // Frames the manifest does not claim, or longer than it claims, or whose bytes do not hash
    // to their name, or cut short: each refused, and nothing of them kept.
    let frame = |name: &[u8; 32], len: u64, bytes: &[u8]| {
        let mut f = silver_wire::frames::frame_header(name, len).to_vec();
        f.extend_from_slice(bytes);
        f
    };
    for (what, body_bytes, said) in [
        (
            "unclaimed",
            frame(&[7u8; 32], 5, b"hello"),
            "does not list as missing",
        ),
        (
            "longer than claimed",
            frame(hash.as_bytes(), 6, b"hello!"),
            "claims is 5 bytes",
        ),
        (
            "other bytes",
            frame(hash.as_bytes(), 5, b"HELLO"),
            "hashing to",
        ),
        (
            "torn",
            frame(hash.as_bytes(), 5, b"hel"),
            "ended in the middle",
        ),
    ] {
        let (status, body) = objects(&agent, &id, &body_bytes);
        assert_eq!(status, 422, "{what}: {body}");
        assert!(body.contains(said), "{what}: {body}");
        assert_eq!(walk_files(&agent.root.join("objects")), 0, "{what}");
    }
    // The real bytes are taken, and then the manifest commits.
    let (status, body) = objects(&agent, &id, &good);
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        &agent.url,
        "POST",
        &format!("/v1/artifacts/{id}/commit"),
        t,
        b"",
    );
    assert_eq!(status, 200, "{body}");
    // A frame for an object the node already has is still hashed: another upload stored
    // `late` after this manifest was sent; this upload's copy has other bytes.
    let late = blake3::hash(b"late!");
    let waiting = expect_upload(
        &agent,
        &format!("silver-manifest 1\nfile\tlate.txt\t5\t{}\n", late.to_hex()),
        &[&late.to_hex()],
    );
    let other = expect_upload(
        &agent,
        &format!("silver-manifest 1\nfile\tz.txt\t5\t{}\n", late.to_hex()),
        &[&late.to_hex()],
    );
    assert_eq!(
        objects(&agent, &other, &frame(late.as_bytes(), 5, b"late!")).0,
        200
    );
    let (status, body) = objects(&agent, &waiting, &frame(late.as_bytes(), 5, b"LATE!"));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("hashing to"), "{body}");
    // A manifest that lies about a size: refused at once when the node has the object, and
    // nothing recorded.
    let lying = format!(
        "silver-manifest 1\nfile\tapp.py\t10737418240\t{}\n",
        hash.to_hex()
    );
    let (lying_id, status, body) = put_manifest(&agent, &lying);
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("claims `app.py` is 10737418240 bytes, but its object is 5"),
        "{body}"
    );
    assert!(!agent
        .root
        .join(format!("artifacts/{}", &lying_id[3..]))
        .exists());
    let (status, _) = http(
        &agent.url,
        "PUT",
        &format!("/v1/artifacts/{id}"),
        t,
        manifest.as_bytes(),
    );
    assert_eq!(status, 200);
    // A zstd bomb posing as a manifest stops at the manifest size limit.
    let bomb = zstd::encode_all(&vec![b'a'; 300 << 20][..], 19).unwrap();
    let (status, body) = http_with(
        &agent.url,
        "PUT",
        &format!("/v1/artifacts/{id}"),
        t,
        &bomb,
        "Content-Encoding: zstd\r\n",
    );
    assert_eq!(status, 413, "{body}");
    // A delta against a base the node does not have.
    let base = format!(
        "Content-Encoding: zstd\r\nX-Silver-Base: b3:{}\r\n",
        "1".repeat(64)
    );
    let (status, _) = http_with(
        &agent.url,
        "PUT",
        &format!("/v1/artifacts/{id}"),
        t,
        &bomb,
        &base,
    );
    assert_eq!(status, 412);
    // A manifest that is not the id it claims.
    let (status, _) = http(
        &agent.url,
        "PUT",
        &format!("/v1/artifacts/b3:{}", "0".repeat(64)),
        t,
        manifest.as_bytes(),
    );
    assert_eq!(status, 422);
    // A manifest with traversal, and every hostile manifest of the packer's corpus.
    let evil = "silver-manifest 1\nlink\tx\t../../../etc\n";
    let (_, status, body) = put_manifest(&agent, evil);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("leaves the app"), "{body}");
    // Activation of something the node does not have, and a bad app name.
    let never_sent = format!("b3:{}", "ab".repeat(32));
    let (status, _) = http(
        &agent.url,
        "POST",
        "/v1/apps/hello/deploy",
        t,
        format!(r#"{{"id":"{never_sent}","who":"t"}}"#).as_bytes(),
    );
    assert_eq!(status, 404);
    let (status, _) = http(
        &agent.url,
        "POST",
        "/v1/apps/..%2Fetc/deploy",
        t,
        format!(r#"{{"id":"{id}","who":"t"}}"#).as_bytes(),
    );
    assert_eq!(status, 400);
    assert_eq!(
        walk_files(&agent.root.join("artifacts")),
        3,
        "the committed manifest and the two never committed"
    );
    let fsck = silver()
        .args(["fsck", "--root"])
        .arg(&agent.root)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", stdout(&fsck));
}

/// Sends `manifest`; the node must answer that it lacks exactly `missing`. Returns its id.
fn expect_upload(agent: &Agent, manifest: &str, missing: &[&str]) -> String {
    let (id, status, body) = put_manifest(agent, manifest);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let listed: Vec<&str> = answer["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(listed, missing, "{body}");
    id
}

/// `PUT /v1/artifacts/<its id>` with `manifest`: (id, status, body).
fn put_manifest(agent: &Agent, manifest: &str) -> (String, u16, String) {
    let id = format!("b3:{}", blake3::hash(manifest.as_bytes()).to_hex());
    let (status, body) = http(
        &agent.url,
        "PUT",
        &format!("/v1/artifacts/{id}"),
        Some(&agent.token),
        manifest.as_bytes(),
    );
    (id, status, body)
}

/// Posts object frames for artifact `id`.
fn objects(agent: &Agent, id: &str, frames: &[u8]) -> (u16, String) {
    http_with(
        &agent.url,
        "POST",
        "/v1/objects",
        Some(&agent.token),
        frames,
        &format!("X-Silver-Artifact: {id}\r\n"),
    )
}

fn walk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn a_held_lock_makes_deploy_wait_or_fail_and_a_stale_one_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    deploy(&agent, &app, &[]);
    // A live holder: this test process.
    let lock = agent.root.join("apps/hello/lock");
    let held = format!(
        r#"{{"holder":"ops@laptop","since":1700000000,"pid":{},"instance":"other"}}"#,
        std::process::id()
    );
    std::fs::write(&lock, &held).unwrap();
    let out = agent
        .silver()
        .arg("deploy")
        .arg(&app)
        .arg("--no-wait")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is being activated by ops@laptop (since 2023-11-14 22:13:20 UTC)"),
        "{}",
        stderr(&out)
    );
    // Without --no-wait it waits, saying who holds the lock, and goes on once it is released.
    let waiting = deploy_releasing_when_waiting(&agent, &app, &lock);
    assert!(
        waiting.contains("Waiting for the lock on `hello`, held by ops@laptop"),
        "{waiting}"
    );
    // A lock left by a dead agent is stale: taken over, and kept as lock.stale.
    std::fs::write(
        &lock,
        r#"{"holder":"ops@laptop","since":1700000000,"pid":999999999,"instance":"dead"}"#,
    )
    .unwrap();
    deploy(&agent, &app, &["--no-wait"]);
    assert!(agent.root.join("apps/hello/lock.stale").exists());
    assert!(!lock.exists());
}

/// Deploys while the lock is held; releases the lock once the client says it is waiting for it
/// (an event, not a guess at timing), and returns the client's stderr.
fn deploy_releasing_when_waiting(agent: &Agent, app: &Path, lock: &Path) -> String {
    use std::io::BufRead;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("silver"))
        .arg("deploy")
        .arg(app)
        .env("SILVER_NODE", &agent.url)
        .env("SILVER_TOKEN", &agent.token)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("Waiting") && lock.exists() {
            std::fs::remove_file(lock).unwrap();
        }
        said.push_str(&line);
        said.push('\n');
    }
    assert!(child.wait().unwrap().success(), "{said}");
    said
}

#[test]
fn concurrent_deploys_of_one_app_all_land_one_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let mut archives = vec![];
    for i in 0..4 {
        let app = tmp.path().join(format!("v{i}"));
        copy_fixture("hello-wsgi", &app);
        std::fs::write(app.join("version.txt"), format!("{i}")).unwrap();
        archives.push(pack_dir(&app, &tmp.path().join("dist")).1);
    }
    let handles: Vec<_> = archives
        .iter()
        .map(|a| {
            let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("silver"));
            cmd.arg("deploy")
                .arg(a)
                .env("SILVER_NODE", &agent.url)
                .env("SILVER_TOKEN", &agent.token);
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for h in handles {
        let out = h.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let history = std::fs::read_to_string(agent.root.join("apps/hello/history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 4);
    assert!(
        history.lines().all(|l| l.contains(r#""ok":true"#)),
        "{history}"
    );
    assert_eq!(
        std::fs::read_dir(agent.root.join("apps/hello/releases"))
            .unwrap()
            .count(),
        4
    );
    assert!(!agent.root.join("apps/hello/lock").exists());
}

#[test]
fn gc_keeps_current_previous_and_pinned_and_frees_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &["--gc-grace", "0"]);
    let mut ids = vec![];
    for i in 0..4 {
        let app = tmp.path().join(format!("v{i}"));
        copy_fixture("hello-wsgi", &app);
        std::fs::write(app.join("version.txt"), "x".repeat(1000 * (i + 1))).unwrap();
        ids.push(
            deploy(&agent, &app, &[])["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    agent
        .silver()
        .args(["pin", "hello", &ids[0]])
        .assert()
        .success();
    agent
        .silver()
        .args(["pin", "hello", &ids[2]])
        .assert()
        .success();
    agent
        .silver()
        .args(["unpin", "hello", &ids[2]])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(agent.root.join("apps/hello/pins")).unwrap(),
        format!("{}\n", ids[0])
    );
    let out = agent
        .silver()
        .args(["gc", "--keep", "0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["releases_removed"],
        serde_json::json!([format!("hello {}", ids[1])])
    );
    // v1's only unique object is its version.txt of 2000 bytes.
    assert_eq!(
        (
            report["objects_removed"].as_u64(),
            report["bytes_freed"].as_u64()
        ),
        (Some(1), Some(2000))
    );
    let left: Vec<String> = releases(&agent, "hello")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        left.contains(&ids[0])
            && left.contains(&ids[2])
            && left.contains(&ids[3])
            && !left.contains(&ids[1])
    );
    // What is left still deploys and rolls back.
    agent
        .silver()
        .args(["activate", "hello", &ids[0]])
        .assert()
        .success();
}

#[test]
fn too_little_free_space_or_too_large_an_upload_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    // Ask for more free space than any disk has: the deploy is refused before any upload.
    let agent = Agent::start(
        &tmp.path().join("full"),
        &["--min-free-bytes", "1000000000000000000"],
    );
    let out = agent.silver().arg("deploy").arg(&app).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not enough free space on the node"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("hint: free space on the node"),
        "{}",
        stderr(&out)
    );
    assert_eq!(walk_files(&agent.root.join("objects")), 0);
    assert!(!agent.root.join("apps/hello").exists());
    drop(agent);
    // An upload over the cap gets 413 and leaves nothing behind.
    let agent = Agent::start(&tmp.path().join("small"), &["--max-upload-bytes", "500"]);
    let out = agent.silver().arg("deploy").arg(&app).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("413") && stderr(&out).contains("over the limit of 500 bytes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(walk_files(&agent.root.join("objects")), 0);
}

#[test]
fn a_stalled_upload_times_out() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &["--idle-timeout", "1"]);
    let hash = blake3::hash(b"hello");
    let manifest = format!("silver-manifest 1\nfile\tapp.py\t5\t{}\n", hash.to_hex());
    let id = expect_upload(&agent, &manifest, &[&hash.to_hex()]);
    let addr = agent.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let head = format!("POST /v1/objects HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nX-Silver-Artifact: {id}\r\nContent-Length: 1000\r\n\r\n", agent.token);
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&[0u8; 20]).unwrap(); // half a frame header, then silence
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("the upload stalled for 1 s"), "{answer}");
    assert_eq!(walk_files(&agent.root.join("objects")), 0);
}

#[test]
fn a_release_that_cannot_be_staged_is_recorded_as_failed_and_the_old_one_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let v1 = deploy(&agent, &app, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // v2 reaches the node, then one of its objects is lost before activation.
    std::fs::write(app.join("new.txt"), "only in v2").unwrap();
    let (v2, archive) = pack_dir(&app, &tmp.path().join("dist"));
    let out = agent.silver().arg("deploy").arg(&archive).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    agent
        .silver()
        .args(["activate", "hello", &v1])
        .assert()
        .success();
    std::fs::remove_dir_all(
        agent
            .root
            .join("apps/hello/releases")
            .join(v2.trim_start_matches("b3:")),
    )
    .unwrap();
    let hash = blake3::hash(b"only in v2").to_hex().to_string();
    std::fs::remove_file(agent.root.join("objects").join(&hash[..2]).join(&hash[2..])).unwrap();
    let out = agent
        .silver()
        .args(["activate", "hello", &v2])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        current(&agent, "hello"),
        v1,
        "the old release keeps serving"
    );
    let out = agent
        .silver()
        .args(["releases", "hello", "--json"])
        .output()
        .unwrap();
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let failed = list.iter().find(|r| r["id"] == v2.as_str()).unwrap();
    assert_eq!(failed["state"], "failed");
    assert!(
        failed["reason"].as_str().unwrap().contains("new.txt"),
        "{failed}"
    );
    // An id the node never received is a 404 and leaves no trace.
    let unknown = format!("b3:{}", "ab".repeat(32));
    let out = agent
        .silver()
        .args(["activate", "other", &unknown])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not on this node"),
        "{}",
        stderr(&out)
    );
    assert!(!agent.root.join("apps/other").exists());
}

#[test]
fn a_manifest_over_two_megabytes_is_accepted() {
    // axum caps buffered bodies at 2 MB by default; a large app's manifest is bigger than that.
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let mut manifest = String::from("silver-manifest 1\n");
    for i in 0..30_000u32 {
        let hash = blake3::hash(&i.to_le_bytes()).to_hex();
        manifest.push_str(&format!(
            "file\tpkg/module_with_a_long_name_{i:05}.py\t4\t{hash}\n"
        ));
    }
    assert!(manifest.len() > 3 << 20);
    let (_, status, body) = put_manifest(&agent, &manifest);
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["missing"].as_array().unwrap().len(), 30_000);
}

#[test]
#[ignore = "system tier (root: apps run as another user): cargo test -- --include-ignored"]
fn an_agent_refuses_a_root_its_app_user_cannot_reach() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // 0700, as `/root` is for a clone under it.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = tmp.path().join("clone/node");
    let out = silver()
        .args(["agent", "--root"])
        .arg(&root)
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    let said = redact(&stderr(&out), tmp.path());
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("cannot reach the node root `[TMP]/clone/node`: `[TMP]` is mode 0700"),
        "{said}"
    );
    assert!(
        said.contains("hint: put the root where others may pass"),
        "{said}"
    );
}

#[test]
fn rollback_and_activate_take_the_12_digit_id_as_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let cache = tmp.path().join("cache");
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let first = agent.deployed(&cache, &app, &[]);
    std::fs::write(app.join("static/extra.txt"), "two").unwrap();
    agent.deployed(&cache, &app, &[]);
    let id12 = &first["b3:".len().."b3:".len() + 12];
    let out = agent
        .silver()
        .args(["rollback", "hello", id12])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), first);
    let out = agent
        .silver()
        .args(["activate", "hello", &format!("b3:{id12}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Too short, unknown, or for an app that was never deployed: clear refusals.
    let out = agent
        .silver()
        .args(["rollback", "hello", &id12[..11]])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fewer than 12 hex digits"),
        "{}",
        stderr(&out)
    );
    let out = agent
        .silver()
        .args(["rollback", "hello", "000000000000"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("no artifact on this node has an id starting with b3:000000000000"),
        "{}",
        stderr(&out)
    );
    let out = agent
        .silver()
        .args(["rollback", "nosuchapp"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("app `nosuchapp` has never been deployed to this node"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("hint: "), "{}", stderr(&out));
}

#[test]
fn wrong_port_and_missing_token_are_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    // The front door's address given as --node: not "a JSON decoding error".
    let out = silver()
        .args(["releases", "hello", "--node", &agent.front])
        .env("SILVER_TOKEN", &agent.token)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains("did not answer as a silver agent's control API"),
        "{said}"
    );
    assert!(
        said.contains("hint: --node takes the agent's control address"),
        "{said}"
    );
    // No token at all: said as such, not as a refused credential.
    let out = silver()
        .args(["releases", "hello", "--node", &agent.url])
        .env_remove("SILVER_TOKEN")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let said = stderr(&out);
    assert!(said.contains("no token was given for node"), "{said}");
    assert!(
        said.contains("hint: set SILVER_TOKEN or --token-file"),
        "{said}"
    );
}

#[test]
fn deploy_names_a_missing_source_and_junk_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.silver");
    std::fs::write(&junk, "not an artifact").unwrap();
    let run = |source: &Path| {
        silver()
            .arg("deploy")
            .arg(source)
            .args(["--node", "http://127.0.0.1:9", "--token-file", "/dev/null"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run(&tmp.path().join("nosuchdir"));
    let said = redact(&stderr(&out), tmp.path());
    assert!(
        said.contains("`[TMP]/nosuchdir` is neither an app directory nor a .silver artifact"),
        "{said}"
    );
    let out = run(&junk);
    assert_eq!(out.status.code(), Some(3), "a refused artifact exits 3");
    let said = redact(&stderr(&out), tmp.path());
    assert!(
        said.contains("`[TMP]/junk.silver` is not a silver artifact"),
        "{said}"
    );
    assert!(!said.contains("pass --app"), "{said}");
}

#[test]
fn token_and_key_files_others_can_read_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "secret-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The client's --token-file.
    let out = silver()
        .args([
            "releases",
            "hello",
            "--node",
            "http://127.0.0.1:9",
            "--token-file",
        ])
        .arg(&token)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let said = redact(&stderr(&out), tmp.path());
    assert!(!out.status.success());
    assert!(
        said.contains(
            "the token file `[TMP]/token` is mode 0644: other users can read or change it"
        ),
        "{said}"
    );
    assert!(said.contains("hint: `chmod 600 [TMP]/token`"), "{said}");
    // The agent's --token-file.
    let out = silver()
        .args(["agent", "--root"])
        .arg(tmp.path().join("node"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--token-file",
        ])
        .arg(&token)
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    let said = redact(&stderr(&out), tmp.path());
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("`[TMP]/token` is mode 0644"), "{said}");
    assert!(
        said.contains("hint: it guards access to the node: `chmod 600"),
        "{said}"
    );
    // Once private, the client takes it.
    let agent = Agent::start(&tmp.path().join("node2"), &[]);
    std::fs::write(&token, &agent.token).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = silver()
        .args(["releases", "hello", "--node", &agent.url, "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("never been deployed"),
        "{}",
        stderr(&out)
    );
}

/// A small file system mounted for one test, unmounted when dropped.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(dir: &Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs(dir.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .output();
    }
}

#[test]
#[ignore = "system tier (root: mounts a small file system): cargo test -- --include-ignored"]
fn of_two_racing_deploys_that_cannot_both_fit_one_lands_and_one_gets_507() {
    let tmp = tempfile::tempdir().unwrap();
    let small = SmallFs::mount(&tmp.path().join("small"), "48m");
    let agent = Agent::start(&small.0.join("node"), &["--min-free-bytes", "1000000"]);
    // Two static sites of 30 MB each that do not compress: either fits, both do not.
    let apps: Vec<std::path::PathBuf> = ["big-one", "big-two"]
        .iter()
        .map(|name| {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(dir.join("static")).unwrap();
            std::fs::write(
                dir.join("app.ini"),
                format!("[production]\napp_name = {name}\ndefault_location = {name}.test\n"),
            )
            .unwrap();
            let mut blob = vec![0u8; 30 << 20];
            blake3::Hasher::new()
                .update(name.as_bytes())
                .finalize_xof()
                .fill(&mut blob);
            std::fs::write(dir.join("static/blob.bin"), blob).unwrap();
            dir
        })
        .collect();
    let outputs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let runs: Vec<_> = apps
            .iter()
            .map(|app| {
                let cmd = agent
                    .silver()
                    .env("NO_COLOR", "1")
                    .arg("deploy")
                    .arg(app)
                    .output();
                scope.spawn(move || cmd.unwrap())
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let landed = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        landed,
        1,
        "{:?}",
        outputs.iter().map(stderr).collect::<Vec<_>>()
    );
    let refused = outputs.iter().find(|o| !o.status.success()).unwrap();
    let said = stderr(refused);
    assert!(said.contains("507"), "{said}");
    let numbers = regex_lite::Regex::new(
        r"not enough free space on the node: \d+ bytes needed, \d+ available",
    )
    .unwrap();
    assert!(numbers.is_match(&said), "{said}");
    // Nothing half-written: no upload in flight, no pending manifest, and fsck is clean.
    let fsck = silver()
        .args(["fsck", "--root"])
        .arg(&agent.root)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", stdout(&fsck));
    let pending = std::fs::read_dir(agent.root.join("artifacts"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pending"))
        .count();
    assert_eq!(pending, 0);
    assert_eq!(walk_files(&agent.root.join("objects/tmp")), 0);
}
