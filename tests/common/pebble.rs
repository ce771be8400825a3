//! Debian's `pebble` (a test ACME CA) and `pebble-challtestsrv` (its DNS) on loopback, over a
//! temp directory, killed when dropped. Debian ships no test certificates for Pebble's own
//! HTTPS, so a CA and a `127.0.0.1` certificate are made here with rcgen.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::registry::free_port;

pub struct Pebble {
    children: Vec<Child>,
    /// The ACME directory URL.
    pub directory: String,
    /// The root that signs Pebble's own HTTPS certificate: `--acme-ca-root`.
    pub ca_root: PathBuf,
    management: String,
    /// pebble-challtestsrv's management API, where DNS answers are changed.
    dns_management: String,
    dir: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How Pebble validates and issues.
pub struct PebbleConfig {
    /// Where its ACME directory listens (chosen before the node starts, which names it).
    pub listen: u16,
    /// The port HTTP-01 validations connect to (the node's front door).
    pub http_port: u16,
    /// The port TLS-ALPN-01 validations connect to (the node's HTTPS).
    pub tls_port: u16,
    /// Seconds each certificate is valid: short, so renewal happens inside a test.
    pub validity_secs: u64,
}

impl Pebble {
    /// Starts both. Pebble's own 5% rejection of good nonces stays on: clients must retry.
    pub fn start(dir: &Path, config: &PebbleConfig) -> Pebble {
        std::fs::create_dir_all(dir).unwrap();
        let ca_root = listener_certs(dir);
        assert_eq!(ca_root, listener_ca(dir));
        let listen = config.listen;
        let (management, dns, dns_management) = (free_port(), free_port(), free_port());
        let pebble_config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble.pem"),
            "privateKey": dir.join("pebble.key"),
            "httpPort": config.http_port,
            "tlsPort": config.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": config.validity_secs,
        }});
        std::fs::write(dir.join("pebble.json"), pebble_config.to_string()).unwrap();
        // Every name resolves to 127.0.0.1, and to no IPv6 address the node is not on.
        let dns_server = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log(dir, "challtestsrv.log"))
            .stderr(log(dir, "challtestsrv.log"))
            .spawn()
            .expect("pebble-challtestsrv runs (scripts/install-deps.sh installs pebble)");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(log(dir, "pebble.log"))
            .stderr(log(dir, "pebble.log"))
            .spawn()
            .expect("pebble runs (scripts/install-deps.sh installs it)");
        let pebble = Pebble {
            children: vec![pebble, dns_server],
            directory: directory(listen),
            ca_root,
            management: format!("https://127.0.0.1:{management}"),
            dns_management: format!("http://127.0.0.1:{dns_management}"),
            dir: dir.to_path_buf(),
        };
        super::eventually(Duration::from_secs(20), "pebble answers", || {
            pebble.curl(&pebble.directory).map(|_| ())
        });
        pebble
    }

    /// The root Pebble issues under (new at every start): what clients of the node trust.
    pub fn issuing_root(&self) -> PathBuf {
        let pem = self
            .curl(&format!("{}/roots/0", self.management))
            .expect("pebble serves its root");
        let path = self.dir.join("issuing-root.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }

    /// Makes `host` resolve to `ip` (every other name resolves to 127.0.0.1).
    pub fn resolve(&self, host: &str, ip: &str) {
        let body = serde_json::json!({"host": host, "addresses": [ip]}).to_string();
        let out = Command::new("curl")
            .args(["-sS", "--fail", "-X", "POST", "-d", &body])
            .arg(format!("{}/add-a", self.dns_management))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the CA: what a node sees when Let's Encrypt is down.
    pub fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn curl(&self, url: &str) -> Result<String, String> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
            .arg(&self.ca_root)
            .arg(url)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The ACME directory URL of a Pebble listening on `port`.
pub fn directory(port: u16) -> String {
    format!("https://127.0.0.1:{port}/dir")
}

/// The CA Pebble's own HTTPS certificate will be signed by, written before Pebble starts so
/// the node can be told to trust it (`--acme-ca-root`).
pub fn listener_ca(dir: &Path) -> PathBuf {
    dir.join("listener-ca.pem")
}

fn log(dir: &Path, name: &str) -> Stdio {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .unwrap();
    Stdio::from(file)
}

/// A CA, and a certificate for 127.0.0.1 and localhost it signs, for Pebble's own HTTPS.
/// Returns the CA's certificate.
pub fn listener_certs(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    if listener_ca(dir).exists() {
        return listener_ca(dir);
    }
    let (ca, cert, key) = ca_and_leaf("silver test ACME listener CA", &["localhost", "127.0.0.1"]);
    std::fs::write(dir.join("pebble.pem"), cert).unwrap();
    std::fs::write(dir.join("pebble.key"), key).unwrap();
    std::fs::write(listener_ca(dir), ca).unwrap();
    listener_ca(dir)
}

/// A CA named `ca_name` and a certificate for `names` it signs: (CA, certificate, key) PEM.
pub fn ca_and_leaf(ca_name: &str, names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}
