//! The ssh transport against a real `sshd` that the test starts on a loopback port, with its own
//! host key, client key and ssh config, all in the test's temp dir.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{copy_fixture, stderr, Agent};

struct Sshd {
    child: Child,
    config: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts sshd on loopback and writes a client config naming it `silver-node`.
fn start_sshd(dir: &Path) -> Sshd {
    std::fs::create_dir_all(dir).unwrap();
    keygen(&dir.join("host_key"));
    keygen(&dir.join("client_key"));
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    // sshd's privilege-separation directory (Debian creates it only when the service starts).
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let d = dir.display();
    std::fs::write(dir.join("sshd_config"), format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
         UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nAllowTcpForwarding yes\nLogLevel ERROR\n"
    )).unwrap();
    std::fs::write(dir.join("config"), format!(
        "Host silver-node\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n  \
         UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking accept-new\n"
    )).unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd (Debian's openssh-server; scripts/install-deps.sh installs it)");
    common::eventually(Duration::from_secs(10), "sshd listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map(drop)
            .map_err(|e| e.to_string())
    });
    Sshd {
        child,
        config: dir.join("config"),
    }
}

#[test]
#[ignore = "system tier (sshd): cargo test -- --include-ignored"]
fn deploy_and_releases_over_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let sshd = start_sshd(&tmp.path().join("ssh"));
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let agent_addr = agent.url.trim_start_matches("http://").to_string();
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let ssh = format!("ssh -F {}", sshd.config.display());
    let run = |args: &[&str]| {
        let mut cmd = common::silver();
        cmd.args(args)
            .args(["--node", "ssh://silver-node", "--agent-addr", &agent_addr])
            .env("SILVER_SSH", &ssh)
            .env("SILVER_TOKEN", &agent.token);
        cmd
    };
    let out = run(&["deploy", app.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["objects_sent"], 5);
    // Without a token here, it is read from the agent's token file on the node, over ssh.
    let out = common::silver()
        .args([
            "releases",
            "hello",
            "--json",
            "--node",
            "ssh://silver-node",
            "--agent-addr",
            &agent_addr,
        ])
        .arg("--remote-token-file")
        .arg(agent.root.join("token"))
        .env("SILVER_SSH", &ssh)
        .env_remove("SILVER_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["releases", "hello", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""state":"active""#));
    // `silver run` streams stdin through the tunnel too: 10 MB in, counted on the node.
    let out = common::silver()
        .args([
            "run",
            "hello",
            "--node",
            "ssh://silver-node",
            "--agent-addr",
            &agent_addr,
        ])
        .args(["--", "wc", "-c"])
        .env("SILVER_SSH", &ssh)
        .env("SILVER_TOKEN", &agent.token)
        .write_stdin(vec![b'x'; 10_000_000])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10000000");
    // A host ssh cannot reach is a clear error naming the node.
    let out = common::silver()
        .args(["releases", "hello", "--node", "ssh://nobody@127.0.0.1:1"])
        .env("SILVER_SSH", &ssh)
        .env("SILVER_TOKEN", &agent.token)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ssh to ssh://nobody@127.0.0.1:1 failed (exit status: 255)"),
        "{}",
        stderr(&out)
    );
    // An ssh failure gets the ssh hint, not the one for a malformed URL.
    assert!(
        stderr(&out).contains("hint: check that `ssh HOST` works"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "system tier (sshd): cargo test -- --include-ignored"]
fn backups_kept_and_fetched_over_ssh_are_private_and_whole() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sshd = start_sshd(&tmp.path().join("ssh"));
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    common::wsgi_app(
        &app,
        "kept",
        "default_location = kept.test\nservice.files =\n",
        common::ECHO_APP,
    );
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    let ssh = format!("ssh -F {}", sshd.config.display());
    // Runs `silver ARGS` through the ssh config, which must succeed; its stdout.
    let silver = |args: &[&str]| {
        let out = agent
            .silver()
            .args(args)
            .env("SILVER_SSH", &ssh)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let in_app = |script: &str| silver(&["run", "kept", "-n", "--", "sh", "-c", script]);
    in_app("echo kept > \"$CONFIG_FILES/a.txt\"");
    let far = tmp.path().join("far");
    std::fs::create_dir(&far).unwrap();
    for name in ["b.tar.zst", "bdir"] {
        let place = format!("ssh://silver-node{}/{name}", far.display());
        silver(&["backup", "kept", &place]);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let kept = far.join(name);
        if kept.is_dir() {
            assert_eq!(mode(&kept), 0o700, "{name}");
            for f in std::fs::read_dir(&kept).unwrap().flatten() {
                assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
            }
        } else {
            assert_eq!(mode(&kept), 0o600, "{name}");
        }
        silver(&["clear", "kept", "--yes"]);
        silver(&["restore", &place, "kept"]);
        assert_eq!(in_app("cat \"$CONFIG_FILES/a.txt\""), "kept\n", "{name}");
    }
}
