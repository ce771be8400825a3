//! TLS on the control API: an agent with a certificate serves https; a client trusts a private
//! CA only with --ca-cert; and without TLS the agent refuses any address beyond loopback.

mod common;

use std::path::Path;

use common::{copy_fixture, silver, stderr, Agent};

/// A test CA (`ca.pem`) and a certificate for 127.0.0.1 it signed (`cert.pem`, `key.pem`),
/// made with rcgen (no `openssl` needed in the fast tier).
fn certificates(dir: &Path) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "silver-test-ca");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    let key = dir.join("key.pem");
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn deploy_over_tls_with_a_trusted_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    certificates(tmp.path());
    let cert = tmp.path().join("cert.pem");
    let key = tmp.path().join("key.pem");
    let agent = Agent::start(
        &tmp.path().join("node"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(agent.url.starts_with("https://"), "{}", agent.url);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    // Not trusted: refused by the client before anything is sent.
    let out = agent.silver().arg("deploy").arg(&app).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach node https://127.0.0.1:"),
        "{}",
        stderr(&out)
    );
    assert!(!agent.root.join("apps/hello").exists());
    // Trusted: deploys.
    let out = agent
        .silver()
        .arg("deploy")
        .arg(&app)
        .arg("--ca-cert")
        .arg(tmp.path().join("ca.pem"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(agent.root.join("apps/hello/current").exists());
    // `silver run` streams stdin over TLS too: 10 MB in, counted on the node.
    let out = agent
        .silver()
        .args(["run", "hello", "--ca-cert"])
        .arg(tmp.path().join("ca.pem"))
        .args(["--", "wc", "-c"])
        .write_stdin(vec![b'x'; 10_000_000])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10000000");
}

#[test]
fn no_plaintext_control_beyond_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    // The check comes before any socket is bound, so no address beyond loopback is touched.
    let out = silver()
        .args(["agent", "--listen", "0.0.0.0:7330", "--root"])
        .arg(tmp.path().join("node"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refusing to listen on 0.0.0.0:7330 without TLS"),
        "{}",
        stderr(&out)
    );
    // Half a TLS setup is a usage error.
    let out = silver()
        .args(["agent", "--tls-cert", "x.pem", "--root"])
        .arg(tmp.path().join("node"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_tls_listener_beside_the_loopback_one() {
    let tmp = tempfile::tempdir().unwrap();
    certificates(tmp.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The way a node image's unit gets them: from the environment (its seed's env file).
    let agent = Agent::start_with_env(
        &tmp.path().join("node"),
        &[],
        &[
            (
                "SILVER_TLS_CERT",
                tmp.path().join("cert.pem").to_str().unwrap(),
            ),
            (
                "SILVER_TLS_KEY",
                tmp.path().join("key.pem").to_str().unwrap(),
            ),
            ("SILVER_TLS_LISTEN", &format!("127.0.0.1:{port}")),
        ],
    );
    // Loopback stays plaintext, for SSH tunnels.
    assert!(agent.url.starts_with("http://"), "{}", agent.url);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let out = agent.silver().arg("deploy").arg(&app).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The remote listener speaks only TLS, with the node's certificate.
    let remote = format!("https://127.0.0.1:{port}");
    let deploy_remote = |ca: Option<&Path>| {
        let mut cmd = agent.silver();
        cmd.arg("deploy").arg(&app).env("SILVER_NODE", &remote);
        if let Some(ca) = ca {
            cmd.arg("--ca-cert").arg(ca);
        }
        cmd.output().unwrap()
    };
    let out = deploy_remote(None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = deploy_remote(Some(&tmp.path().join("ca.pem")));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = silver()
        .args(["agent", "--tls-listen", "127.0.0.1:0", "--root"])
        .arg(tmp.path().join("other"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
