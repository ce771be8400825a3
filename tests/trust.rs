//! Signed build and promotion records against a real agent with a trust policy: every refusal
//! the issue names (unsigned, unknown key, other app, other environment, replay, downgrade),
//! a rollback as a new promotion, and `minisign` reading silver's signatures and silver
//! reading minisign's.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_fixture, pack_dir, silver, stderr, stdout, Agent};

struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn new(dir: &Path, names: &[&str]) -> Keys {
        std::fs::create_dir_all(dir).unwrap();
        for name in names {
            let out = silver()
                .args(["key", "new", name, "--dir"])
                .arg(dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
        Keys {
            dir: dir.to_path_buf(),
        }
    }

    fn public(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("{name}.pub"))).unwrap();
        text.lines().nth(1).unwrap().to_string()
    }

    fn secret(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

/// A trust policy for `production`: CI's key builds, `promoter` (of `promoters`) promotes.
fn install_policy(agent: &Agent, keys: &Keys, promoters: &Keys, promoter: &str) {
    std::fs::write(
        agent.root.join("trust.toml"),
        format!(
            "environment = \"production\"\n[build]\nkeys = [\"{}\"]\n[promote]\nkeys = [\"{}\"]\n",
            keys.public("ci"),
            promoters.public(promoter)
        ),
    )
    .unwrap();
}

fn sign(archive: &Path, keys: &Keys, key: &str) -> PathBuf {
    let out = silver()
        .args(["sign"])
        .arg(archive)
        .arg("--key")
        .arg(keys.secret(key))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    PathBuf::from(stdout(&out).trim())
}

fn promote(
    dir: &Path,
    keys: &Keys,
    key: &str,
    app: &str,
    env: &str,
    id: &str,
    seq: u64,
) -> PathBuf {
    let out = silver()
        .current_dir(dir)
        .args([
            "promote",
            app,
            env,
            id,
            "--sequence",
            &seq.to_string(),
            "--key",
        ])
        .arg(keys.secret(key))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    PathBuf::from(stdout(&out).trim())
}

fn deploy(agent: &Agent, archive: &Path, records: &[&Path]) -> std::process::Output {
    let mut cmd = agent.silver();
    cmd.arg("deploy").arg(archive);
    for r in records {
        cmd.arg("--record").arg(r);
    }
    cmd.output().unwrap()
}

fn refused(out: &std::process::Output, why: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "it was let through; wanted a refusal naming {why:?}"
    );
    assert!(err.contains(why), "wanted {why:?} in:\n{err}");
}

#[test]
fn a_node_with_a_trust_policy_activates_only_signed_promoted_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"), &["ci", "ops", "stranger"]);
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    install_policy(&agent, &keys, &keys, "ops");
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let (v1, archive1) = pack_dir(&app, &tmp.path().join("out1"));
    std::fs::write(app.join("extra.txt"), "v2\n").unwrap();
    let (v2, archive2) = pack_dir(&app, &tmp.path().join("out2"));
    let build1 = sign(&archive1, &keys, "ci");
    let records = tmp.path().join("records");
    std::fs::create_dir_all(&records).unwrap();

    refused(&deploy(&agent, &archive1, &[]), "no build record");
    refused(
        &deploy(&agent, &archive1, &[&build1]),
        "no promotion record",
    );
    let staging = promote(&records, &keys, "ops", "hello", "staging", &v1, 10);
    refused(
        &deploy(&agent, &archive1, &[&build1, &staging]),
        "for environment `staging`; this node is `production`",
    );
    let by_stranger = promote(&records, &keys, "stranger", "hello", "production", &v1, 11);
    refused(
        &deploy(&agent, &archive1, &[&build1, &by_stranger]),
        "which the node's trust policy does not name for promote",
    );
    let other_app = promote(&records, &keys, "ops", "blog", "production", &v1, 12);
    refused(
        &deploy(&agent, &archive1, &[&build1, &other_app]),
        "is for app `blog`, not `hello`",
    );
    let build_by_ops = sign(&archive2, &keys, "ops");
    let p2_early = promote(&records, &keys, "ops", "hello", "production", &v2, 13);
    refused(
        &deploy(&agent, &archive2, &[&build_by_ops, &p2_early]),
        "does not name for build",
    );
    let build2 = sign(&archive2, &keys, "ci");
    // A record without its signature beside it.
    let unsigned = promote(&records, &keys, "ops", "hello", "production", &v1, 14);
    std::fs::remove_file(records.join(format!(
        "{}.minisig",
        unsigned.file_name().unwrap().to_str().unwrap()
    )))
    .unwrap();
    refused(
        &deploy(&agent, &archive1, &[&build1, &unsigned]),
        "is unsigned",
    );
    assert!(
        !agent.root.join("apps/hello/current").exists(),
        "a refused deploy activated something"
    );

    let p1 = promote(&records, &keys, "ops", "hello", "production", &v1, 20);
    let out = deploy(&agent, &archive1, &[&build1, &p1]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The same promotion again is a replay, even of the release that is live.
    refused(
        &deploy(&agent, &archive1, &[&build1, &p1]),
        "a replay or a downgrade",
    );
    let p2 = promote(&records, &keys, "ops", "hello", "production", &v2, 21);
    let out = deploy(&agent, &archive2, &[&build2, &p2]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A config change restarts the live release: no new promotion needed for that.
    let out = agent
        .silver()
        .args(["config", "set", "hello", "GREETING=hi"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // A rollback is a new promotion naming the old id; the build record was kept.
    let downgrade = promote(&records, &keys, "ops", "hello", "production", &v1, 19);
    let rollback = |record: &Path| {
        agent
            .silver()
            .args(["rollback", "hello", &v1, "--record"])
            .arg(record)
            .output()
            .unwrap()
    };
    refused(&rollback(&downgrade), "sequence 19, at or below 21");
    refused(
        &agent
            .silver()
            .args(["rollback", "hello", &v1])
            .output()
            .unwrap(),
        "no promotion record",
    );
    let back = promote(&records, &keys, "ops", "hello", "production", &v1, 22);
    let out = rollback(&back);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = agent
        .silver()
        .args(["releases", "hello", "--json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let live = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["state"] == "active")
        .unwrap();
    assert_eq!(live["id"], v1.as_str());
    assert!(
        live["promoted_by"]
            .as_str()
            .unwrap()
            .ends_with("to production, sequence 22"),
        "{live}"
    );
    assert!(live["built_by"].as_str().unwrap().contains('@'), "{live}");
}

#[test]
#[ignore = "system tier (minisign): cargo test -- --include-ignored"]
fn minisign_verifies_silvers_signatures_and_silver_takes_minisigns() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"), &["ci"]);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let (id, archive) = pack_dir(&app, &tmp.path().join("out"));
    let build = sign(&archive, &keys, "ci");
    let out = std::process::Command::new("minisign")
        .arg("-Vm")
        .arg(&build)
        .arg("-p")
        .arg(keys.dir.join("ci.pub"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "minisign -V: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("Trusted comment: silver the build record of hello"));

    // minisign's own key (unencrypted, -W) signs a promotion silver wrote, as a co-signer
    // would; and silver signs with minisign's key.
    let ms = tmp.path().join("ms");
    std::fs::create_dir_all(&ms).unwrap();
    let made = std::process::Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(ms.join("ops.pub"))
        .arg("-s")
        .arg(ms.join("ops.key"))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let ms_keys = Keys { dir: ms.clone() };
    let promotion = promote(tmp.path(), &ms_keys, "ops", "hello", "production", &id, 1);
    let cosig = format!("{}.minisig.2", promotion.display());
    let cosigned = std::process::Command::new("minisign")
        .args(["-S", "-s"])
        .arg(ms.join("ops.key"))
        .arg("-m")
        .arg(&promotion)
        .args(["-x", &cosig])
        .output()
        .unwrap();
    assert!(
        cosigned.status.success(),
        "{}",
        String::from_utf8_lossy(&cosigned.stderr)
    );

    let agent = Agent::start(&tmp.path().join("node"), &[]);
    install_policy(&agent, &keys, &ms_keys, "ops");
    let out = deploy(&agent, &archive, &[&build, &promotion]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn keys_rotate_only_by_a_policy_the_old_root_keys_signed() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"), &["ci", "ops", "root", "next"]);
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let policy = |promote: &str| {
        format!(
            "environment = \"production\"\n[build]\nkeys = [\"{}\"]\n[promote]\nkeys = [\"{}\"]\n[root]\nkeys = [\"{}\"]\n",
            keys.public("ci"),
            keys.public(promote),
            keys.public("root")
        )
    };
    let installed = agent.root.join("trust.toml");
    std::fs::write(&installed, policy("ops")).unwrap();
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o666)).unwrap();
    let show = || agent.silver().args(["trust", "show"]).output().unwrap();
    refused(&show(), "writable by others");
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = show();
    assert!(
        out.status.success() && stdout(&out).contains("environment production"),
        "{}",
        stderr(&out)
    );

    let new_policy = tmp.path().join("new-trust.toml");
    std::fs::write(&new_policy, policy("next")).unwrap();
    let rotate = || {
        agent
            .silver()
            .args(["trust", "rotate"])
            .arg(&new_policy)
            .output()
            .unwrap()
    };
    refused(
        &rotate(),
        "must be signed by 1 of the current policy's `root` keys; it has 0",
    );
    let key_sign = |key: &str| {
        let out = silver()
            .args(["key", "sign"])
            .arg(&new_policy)
            .arg("--key")
            .arg(keys.secret(key))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    key_sign("ops");
    refused(&rotate(), "does not name for root");
    std::fs::remove_file(format!("{}.minisig", new_policy.display())).unwrap();
    key_sign("root");
    let out = rotate();
    assert!(out.status.success(), "{}", stderr(&out));

    // The new promote key is the one that counts now.
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let (v1, archive) = pack_dir(&app, &tmp.path().join("out"));
    let build = sign(&archive, &keys, "ci");
    let old = promote(tmp.path(), &keys, "ops", "hello", "production", &v1, 1);
    refused(
        &deploy(&agent, &archive, &[&build, &old]),
        "does not name for promote",
    );
    let new = promote(tmp.path(), &keys, "next", "hello", "production", &v1, 2);
    let out = deploy(&agent, &archive, &[&build, &new]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
#[ignore = "system tier (docker-registry): cargo test -- --include-ignored"]
fn records_kept_beside_the_artifact_in_a_registry_travel_with_a_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = common::registry::DockerRegistry::start(&tmp.path().join("registry"), None);
    let keys = Keys::new(&tmp.path().join("keys"), &["ci", "ops"]);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let (id, archive) = pack_dir(&app, &tmp.path().join("out"));
    let build = sign(&archive, &keys, "ci");
    let repo = format!("{}/hello", registry.addr);
    let out = silver()
        .arg("push")
        .arg(&archive)
        .arg(format!("{repo}:v1"))
        .arg("--record")
        .arg(&build)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = stdout(&out).trim().to_string();

    let agent = Agent::start(&tmp.path().join("node"), &[]);
    install_policy(&agent, &keys, &keys, "ops");
    let deploy_ref = || {
        agent
            .silver()
            .args(["deploy", &reference])
            .output()
            .unwrap()
    };
    refused(&deploy_ref(), "no promotion record");
    for (env, seq) in [("staging", 1), ("production", 2), ("production", 3)] {
        let out = silver()
            .current_dir(tmp.path())
            .args([
                "promote",
                "hello",
                env,
                &id,
                "--sequence",
                &seq.to_string(),
                "--registry",
                &repo,
                "--key",
            ])
            .arg(keys.secret("ops"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = deploy_ref();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent
        .silver()
        .args(["releases", "hello", "--json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        list[0]["promoted_by"]
            .as_str()
            .unwrap()
            .ends_with("to production, sequence 3"),
        "{list}"
    );
}

#[test]
fn an_expired_promotion_activates_nothing_and_never_stops_the_running_release() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = Keys::new(&tmp.path().join("keys"), &["ci", "ops"]);
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    install_policy(&agent, &keys, &keys, "ops");
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let (v1, archive1) = pack_dir(&app, &tmp.path().join("out1"));
    let build1 = sign(&archive1, &keys, "ci");
    let p1 = promote(tmp.path(), &keys, "ops", "hello", "production", &v1, 1);
    let out = deploy(&agent, &archive1, &[&build1, &p1]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A promotion whose expiry has passed (held back by a freeze attack), signed by the right
    // key: written by hand, as an attacker replaying an old one would hold it.
    std::fs::write(app.join("extra.txt"), "v2\n").unwrap();
    let (v2, archive2) = pack_dir(&app, &tmp.path().join("out2"));
    let build2 = sign(&archive2, &keys, "ci");
    let expired = tmp.path().join("expired.json");
    std::fs::write(
        &expired,
        format!(
            "{{\n  \"kind\": \"promotion\",\n  \"app\": \"hello\",\n  \"environment\": \"production\",\n  \"id\": \"{v2}\",\n  \"sequence\": 2,\n  \"expires\": \"2026-01-01T00:00:00Z\",\n  \"promoted_at\": \"2025-12-01T00:00:00Z\",\n  \"promoted_by\": \"ops@laptop\"\n}}\n"
        ),
    )
    .unwrap();
    let out = silver()
        .args(["key", "sign"])
        .arg(&expired)
        .arg("--key")
        .arg(keys.secret("ops"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    refused(
        &deploy(&agent, &archive2, &[&build2, &expired]),
        "expired at 2026-01-01T00:00:00Z",
    );
    // The release that runs keeps running, and restarts with a config change.
    assert_eq!(
        std::fs::read_link(agent.root.join("apps/hello/current"))
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap(),
        &v1[3..]
    );
    let out = agent
        .silver()
        .args(["config", "set", "hello", "GREETING=hi"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
