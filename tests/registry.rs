//! Artifacts through a real OCI registry (Debian's `docker-registry` on loopback): push, pull,
//! other clients (`skopeo`), credentials, nodes that pull by themselves, and a registry that
//! goes away in the middle of a pull.

mod common;

use std::path::Path;

use common::registry::{cutting_proxy, DockerRegistry};
use common::{copy_fixture, silver, stderr, stdout, Agent};
use serde_json::Value;

fn push(app: &Path, target: &str, env: &[(&str, &str)]) -> Value {
    let out = silver()
        .args(["push"])
        .arg(app)
        .args([target, "--json"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn skopeo(args: &[&str]) -> String {
    let out = std::process::Command::new("skopeo")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "system tier (docker-registry, skopeo): cargo test -- --include-ignored"]
fn push_pull_and_other_clients_read_it() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = DockerRegistry::start(&tmp.path().join("registry"), None);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let pushed = push(&app, &format!("{}/team/hello:v1", registry.addr), &[]);
    let reference = pushed["reference"].as_str().unwrap().to_string();
    let id = pushed["id"].as_str().unwrap().to_string();
    assert!(reference.starts_with(&format!("{}/team/hello@sha256:", registry.addr)));
    assert_eq!(pushed["blobs_skipped"], 0);

    // Another client reads what silver wrote: the manifest, the config (silver's manifest),
    // and a copy of every blob to another repository.
    let docker = format!("docker://{reference}");
    let raw: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &docker,
    ]))
    .unwrap();
    assert_eq!(raw["artifactType"], "application/vnd.silver.artifact.v1");
    assert_eq!(raw["annotations"]["dev.silver.artifact.id"], id.as_str());
    let out = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--config",
            "--raw",
            "--tls-verify=false",
            &docker,
        ])
        .output()
        .unwrap();
    let config = zstd::decode_all(out.stdout.as_slice()).unwrap();
    assert!(
        config.starts_with(b"silver-manifest"),
        "{}",
        String::from_utf8_lossy(&config)
    );
    let copy = format!("docker://{}/mirror/hello:v1", registry.addr);
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &docker,
        &copy,
    ]);

    // The same artifact again: nothing to send.
    let again = push(&app, &format!("{}/team/hello:v1", registry.addr), &[]);
    assert_eq!(
        (again["blobs_sent"].as_u64(), again["reference"].as_str()),
        (Some(0), Some(reference.as_str()))
    );

    // Pulled back (from the copy skopeo made), it is the same artifact, verified.
    let mirrored = reference.replace("/team/hello@", "/mirror/hello@");
    let out_file = tmp.path().join("pulled.silver");
    let out = silver()
        .args(["pull", &mirrored, "-o"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    common::verified(&out_file, &id);

    // A one-file change sends its config, about one manifest part and about one pack.
    std::fs::write(app.join("static/extra.txt"), "one more file\n").unwrap();
    let changed = push(&app, &format!("{}/team/hello:v2", registry.addr), &[]);
    let sent = changed["blobs_sent"].as_u64().unwrap();
    assert!((2..=5).contains(&sent), "{changed}");
}

#[test]
#[ignore = "system tier (docker-registry, skopeo): cargo test -- --include-ignored"]
fn registry_credentials_come_from_auth_files_never_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = DockerRegistry::start(&tmp.path().join("registry"), Some(("ci", "s3cret-pw")));
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let target = format!("{}/hello:v1", registry.addr);
    let empty = tmp.path().join("none.json");
    let out = silver()
        .args(["push"])
        .arg(&app)
        .arg(&target)
        .env("REGISTRY_AUTH_FILE", &empty)
        .env("HOME", tmp.path())
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("wants credentials") && err.contains("REGISTRY_AUTH_FILE"),
        "{err}"
    );

    let auth = tmp.path().join("auth.json");
    std::fs::write(
        &auth,
        r#"{"auths": {"REG": {"username": "ci", "password": "wrong"}}}"#
            .replace("REG", &registry.addr),
    )
    .unwrap();
    let out = silver()
        .args(["push"])
        .arg(&app)
        .arg(&target)
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("refused the ones given"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "a password in a message: {err}");

    std::fs::write(
        &auth,
        r#"{"auths": {"REG": {"username": "ci", "password": "s3cret-pw"}}}"#
            .replace("REG", &registry.addr),
    )
    .unwrap();
    let pushed = push(
        &app,
        &target,
        &[("REGISTRY_AUTH_FILE", auth.to_str().unwrap())],
    );
    let reference = pushed["reference"].as_str().unwrap();

    // A node pulls with its own credentials file, which must be private to it.
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let node_auth = agent.root.join("registry-auth.json");
    std::fs::copy(&auth, &node_auth).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&node_auth, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = agent.silver().args(["deploy", reference]).output().unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains("readable by other users")
            && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&node_auth, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = agent
        .silver()
        .args(["deploy", reference, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
#[ignore = "system tier (docker-registry, skopeo): cargo test -- --include-ignored"]
fn a_node_pulls_only_the_packs_it_lacks_and_deploys() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = DockerRegistry::start(&tmp.path().join("registry"), None);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    // Enough files for several packs.
    for i in 0..400 {
        std::fs::write(
            app.join(format!("static/f{i:03}.txt")),
            format!("file {i}\n").repeat(1500),
        )
        .unwrap();
    }
    let first = push(&app, &format!("{}/hello:v1", registry.addr), &[]);
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let deployed = deploy_json(&agent, first["reference"].as_str().unwrap(), &[]);
    assert_eq!(deployed["id"], first["id"]);
    let pulled = &deployed["pulled"];
    assert_eq!(pulled["packs_fetched"], pulled["packs_total"]);
    let live = agent.root.join("apps/hello/current/static");
    let body = std::fs::read_to_string(live.join("f007.txt")).unwrap();
    assert!(body.starts_with("file 7\n"), "{body}");

    std::fs::write(app.join("static/f200.txt"), "changed\n").unwrap();
    let second = push(&app, &format!("{}/hello:v2", registry.addr), &[]);
    let deployed = deploy_json(&agent, second["reference"].as_str().unwrap(), &[]);
    let pulled = &deployed["pulled"];
    let (fetched, total) = (
        pulled["packs_fetched"].as_u64().unwrap(),
        pulled["packs_total"].as_u64().unwrap(),
    );
    assert!(total >= 4 && (1..=2).contains(&fetched), "{pulled}");
    assert_eq!(
        std::fs::read_to_string(live.join("f200.txt")).unwrap(),
        "changed\n"
    );

    // By id, through the tag push set.
    let out = agent
        .silver()
        .args(["deploy", first["id"].as_str().unwrap(), "--registry"])
        .arg(format!("{}/hello", registry.addr))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), first["id"].as_str().unwrap());
    fsck_clean(&agent);
}

#[test]
#[ignore = "system tier (docker-registry, skopeo): cargo test -- --include-ignored"]
fn a_registry_gone_mid_pull_leaves_nothing_half_staged_and_the_next_pull_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = DockerRegistry::start(&tmp.path().join("registry"), None);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    for i in 0..300 {
        std::fs::write(
            app.join(format!("static/g{i:03}.txt")),
            format!("{i}").repeat(3000),
        )
        .unwrap();
    }
    let pushed = push(&app, &format!("{}/hello:v1", registry.addr), &[]);
    let digest = pushed["digest"].as_str().unwrap().to_string();
    // Find a pack's digest: the proxy cuts the response that carries it.
    let raw: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", pushed["reference"].as_str().unwrap()),
    ]))
    .unwrap();
    let packs: Vec<&str> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["mediaType"] == "application/vnd.silver.pack.v1+zstd")
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert!(packs.len() >= 3, "{raw}");
    let proxy = cutting_proxy(
        registry.addr.clone(),
        packs[packs.len() / 2].to_string(),
        300,
    );
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let through_proxy = format!("{proxy}/hello@{digest}");
    let out = agent
        .silver()
        .args(["deploy", &through_proxy])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&proxy) && err.contains("failed to pull"),
        "{err}"
    );
    // Nothing half-staged: no release, no pending manifest, and the store checks clean.
    assert!(!agent.root.join("apps/hello").join("current").exists());
    let pending: Vec<_> = std::fs::read_dir(agent.root.join("artifacts"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(pending.is_empty(), "{pending:?}");
    fsck_clean(&agent);

    // The proxy now relays whole: the pull resumes, fetching only the packs not yet stored.
    let deployed = deploy_json(&agent, &through_proxy, &[]);
    let pulled = &deployed["pulled"];
    assert!(
        pulled["packs_fetched"].as_u64() < pulled["packs_total"].as_u64(),
        "{pulled}"
    );
    assert_eq!(deployed["id"], pushed["id"]);
    fsck_clean(&agent);
}

fn deploy_json(agent: &Agent, reference: &str, extra: &[&str]) -> Value {
    let out = agent
        .silver()
        .args(["deploy", reference, "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fsck_clean(agent: &Agent) {
    let out = silver()
        .args(["fsck", "--root"])
        .arg(&agent.root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck: {}{}",
        stdout(&out),
        stderr(&out)
    );
}
