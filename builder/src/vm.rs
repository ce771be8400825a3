//! Local nodes: a baked image booted in QEMU (the local provider, Silver Lining's `create-node`).
//!
//! Each node has a state directory (`<nodes>/<name>/`): a copy-on-write overlay over the image's
//! `disk.qcow2`, a cloud-init NoCloud seed (a FAT image labelled CIDATA, made with mtools: no
//! loop mount) carrying the per-instance settings (hostname, authorized SSH key, the agent's
//! token, the agent's TLS certificate), the serial console log, QEMU's pid, and `node.json`.
//! SSH, the front door and the agent's TLS control port are forwarded to loopback:
//! `port_base`, `port_base + 1` and `port_base + 2`.
//!
//! The agent's certificate is signed by a CA made for this node alone, whose private key is
//! thrown away at once: the node's `ca.pem` can vouch for that one certificate and nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct BootConfig {
    /// A bake's output directory: disk.qcow2, vmlinuz, initrd.img.
    pub image: PathBuf,
    pub name: String,
    /// Where node state directories live.
    pub nodes_dir: PathBuf,
    /// The public key to authorize for root.
    pub ssh_key: String,
    pub port_base: u16,
    pub memory_mib: u32,
    pub accel: Accel,
    /// How long to wait for the agent's front door to answer.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM where it works: `/dev/kvm` opens and the CPU has virtualization extensions (a
    /// `/dev/kvm` without them, as in some nested setups, starts guests that never run).
    pub fn detect() -> Accel {
        let cpu_ok = std::fs::read_to_string("/proc/cpuinfo")
            .map(|c| {
                c.lines()
                    .filter(|l| l.starts_with("flags"))
                    .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
            })
            .unwrap_or(false);
        let dev_ok = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        if cpu_ok && dev_ok {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }
}

/// What `node list` shows, and what `node.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub image: PathBuf,
    pub ssh_port: u16,
    pub http_port: u16,
    pub accel: Accel,
    pub pid: Option<u32>,
    pub running: bool,
    /// `ssh://root@127.0.0.1:<ssh_port>`: what `--node` takes.
    pub node_url: String,
    pub front_url: String,
    /// `https://127.0.0.1:<port_base + 2>`: the agent's TLS control port.
    #[serde(default)]
    pub agent_url: String,
    /// The CA that signed the agent's certificate: what `--ca-cert` takes.
    #[serde(default)]
    pub ca_cert: PathBuf,
    pub token_file: PathBuf,
    pub serial_log: PathBuf,
}

/// Boots a node and waits until its agent's front door answers. On failure the serial log is
/// kept, and the error carries its tail.
pub fn boot(config: &BootConfig) -> Result<NodeInfo, Error> {
    check_name(&config.name)?;
    let dir = config.nodes_dir.join(&config.name);
    check_boot_inputs(config, &dir)?;
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let image = std::fs::canonicalize(&config.image).map_err(|e| io(&config.image, e))?;
    let qemu = prepare(config, &dir, &image)?;
    run(qemu_command(&qemu), "qemu-system-x86_64")?;
    let info = NodeInfo {
        name: config.name.clone(),
        image,
        ssh_port: qemu.ports.ssh,
        http_port: qemu.ports.http,
        accel: config.accel,
        pid: read_pid(&qemu.pidfile),
        running: true,
        node_url: format!("ssh://root@127.0.0.1:{}", qemu.ports.ssh),
        front_url: format!("http://127.0.0.1:{}", qemu.ports.http),
        agent_url: format!("https://127.0.0.1:{}", qemu.ports.agent),
        ca_cert: dir.join("ca.pem"),
        token_file: dir.join("token"),
        serial_log: qemu.serial.clone(),
    };
    let json = serde_json::to_string_pretty(&info).expect("serializable");
    std::fs::write(dir.join("node.json"), json).map_err(|e| io(&dir, e))?;
    wait_until_up(config, &info)?;
    Ok(info)
}

/// Everything QEMU is started with; `qemu_command` turns it into the command line.
#[derive(Debug, Clone)]
pub struct QemuInputs {
    /// The bake's output directory (kernel and initrd).
    pub image: PathBuf,
    pub overlay: PathBuf,
    pub seed: PathBuf,
    pub serial: PathBuf,
    pub pidfile: PathBuf,
    pub accel: Accel,
    pub memory_mib: u32,
    pub ports: Ports,
    /// The agent's TLS port inside the guest.
    pub remote_port: u16,
}

/// The host's loopback ports forwarded into the guest.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub ssh: u16,
    pub http: u16,
    pub agent: u16,
}

/// The QEMU command line for a node: direct kernel boot, user networking with loopback-only
/// forwards (ssh, the front door, the agent's TLS port), daemonized with a pid file. Pure, so a
/// snapshot test can read it.
pub fn qemu_command(q: &QemuInputs) -> Command {
    let accel = match q.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    let Ports { ssh, http, agent } = q.ports;
    let remote = q.remote_port;
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", &format!("q35,accel={accel}")])
        .args([
            "-m",
            &q.memory_mib.to_string(),
            "-smp",
            "2",
            "-display",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", q.serial.display()))
        .arg("-kernel")
        .arg(q.image.join("vmlinuz"))
        .arg("-initrd")
        .arg(q.image.join("initrd.img"))
        .args(["-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0"])
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=qcow2",
            q.overlay.display()
        ))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", q.seed.display()))
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,hostfwd=tcp:127.0.0.1:{ssh}-:22,hostfwd=tcp:127.0.0.1:{http}-:80,\
             hostfwd=tcp:127.0.0.1:{agent}-:{remote}"
        ))
        .args([
            "-device",
            "virtio-net-pci,netdev=n0",
            "-daemonize",
            "-pidfile",
        ])
        .arg(&q.pidfile);
    cmd
}

/// A node of that name must not run already, and the image must have what a boot needs.
fn check_boot_inputs(config: &BootConfig, dir: &Path) -> Result<(), Error> {
    if let Some(info) = read_info(dir) {
        if info.running {
            return Err(tool(
                "node boot",
                format!(
                    "node `{}` is already running (pid {})",
                    config.name,
                    info.pid.unwrap_or(0)
                ),
            ));
        }
    }
    for f in ["disk.qcow2", "vmlinuz", "initrd.img", "manifest.json"] {
        if !config.image.join(f).is_file() {
            return Err(tool(
                "node boot",
                format!(
                    "`{}` has no {f}: pass a `silver bake` output directory (with the qcow2 and kernel formats)",
                    config.image.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The node's overlay disk (made once), its credentials and its seed: what QEMU starts with.
fn prepare(config: &BootConfig, dir: &Path, image: &Path) -> Result<QemuInputs, Error> {
    let overlay = dir.join("overlay.qcow2");
    if !overlay.exists() {
        let mut cmd = Command::new("qemu-img");
        cmd.args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(image.join("disk.qcow2"))
            .arg(&overlay);
        run(cmd, "qemu-img create")?;
    }
    let agent = image_agent(image)?;
    let remote_port = agent
        .remote
        .parse::<std::net::SocketAddr>()
        .map_err(|_| {
            tool(
                "node boot",
                format!(
                    "the image's agent.remote `{}` is not an address",
                    agent.remote
                ),
            )
        })?
        .port();
    let token = token(dir)?;
    let tls = node_tls(dir, &config.name)?;
    let seed = dir.join("seed.img");
    let settings = Settings {
        name: &config.name,
        ssh_key: &config.ssh_key,
        token: &token,
        tls: &tls,
        agent: &agent,
    };
    make_seed(&seed, &settings)?;
    let serial = dir.join("serial.log");
    let _ = std::fs::remove_file(&serial);
    Ok(QemuInputs {
        image: image.to_path_buf(),
        overlay,
        seed,
        serial,
        pidfile: dir.join("qemu.pid"),
        accel: config.accel,
        memory_mib: config.memory_mib,
        ports: Ports {
            ssh: config.port_base,
            http: config.port_base + 1,
            agent: config.port_base + 2,
        },
        remote_port,
    })
}

/// Whether an HTTP server answers on the loopback `port`: a plain request over a `TcpStream`
/// (the builder has no HTTP client, design §7), with a Host no app claims, and the first bytes
/// of any answer (404 or an app's page) are enough.
fn answers_http(port: u16, timeout: Duration) -> bool {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = b"GET / HTTP/1.1\r\nHost: health.invalid\r\nConnection: close\r\n\r\n";
    let mut head = [0u8; 5];
    stream.write_all(request).is_ok() && stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// Waits until the node's front door answers HTTP; stops a node that does not come up in time
/// and says why, with the serial console's tail.
fn wait_until_up(config: &BootConfig, info: &NodeInfo) -> Result<(), Error> {
    let deadline = Instant::now() + config.timeout;
    loop {
        // QEMU accepts forwarded connections before the guest listens, then closes them: only
        // an HTTP answer counts.
        if answers_http(info.http_port, Duration::from_secs(5)) {
            return Ok(());
        }
        let alive = info.pid.is_some_and(pid_alive);
        if alive && Instant::now() <= deadline {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        if alive {
            let _ = stop(&config.nodes_dir, &config.name);
        }
        let why = if alive {
            format!(
                "its agent did not answer within {} s",
                config.timeout.as_secs()
            )
        } else {
            "QEMU exited".into()
        };
        return Err(tool(
            "node boot",
            format!(
                "node `{}` did not come up: {why}; the serial console ({}) ends with:\n{}",
                config.name,
                info.serial_log.display(),
                tail(&info.serial_log, 25)
            ),
        ));
    }
}

/// The nodes under `nodes_dir`, running or not.
pub fn list(nodes_dir: &Path) -> Vec<NodeInfo> {
    let Ok(entries) = std::fs::read_dir(nodes_dir) else {
        return vec![];
    };
    let mut nodes: Vec<NodeInfo> = entries
        .flatten()
        .filter_map(|e| read_info(&e.path()))
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

/// Stops a node's QEMU (SIGTERM, then SIGKILL); its state directory stays for the next boot.
pub fn stop(nodes_dir: &Path, name: &str) -> Result<NodeInfo, Error> {
    check_name(name)?;
    let dir = nodes_dir.join(name);
    let info = read_info(&dir).ok_or_else(|| {
        tool(
            "node stop",
            format!("there is no node `{name}` (see `silver node list`)"),
        )
    })?;
    if let Some(pid) = info.pid.filter(|p| pid_alive(*p)) {
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if pid_alive(pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    let _ = std::fs::remove_file(dir.join("qemu.pid"));
    Ok(NodeInfo {
        running: false,
        pid: None,
        ..info
    })
}

/// A local node by name, running or not.
pub fn find(nodes_dir: &Path, name: &str) -> Option<NodeInfo> {
    check_name(name).ok()?;
    read_info(&nodes_dir.join(name))
}

fn read_info(dir: &Path) -> Option<NodeInfo> {
    let text = std::fs::read_to_string(dir.join("node.json")).ok()?;
    let mut info: NodeInfo = serde_json::from_str(&text).ok()?;
    info.pid = read_pid(&dir.join("qemu.pid"));
    info.running = info.pid.is_some_and(pid_alive);
    Some(info)
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The agent's token for this node: made once, kept in the state directory (0600), handed to
/// the node through the seed.
fn token(dir: &Path) -> Result<String, Error> {
    let path = dir.join("token");
    safefs::load_or_create_secret(&path, 32).map_err(|e| io(&path, e))
}

/// The agent's certificate and key (PEM) for this node, made once and kept (key 0600) in its
/// state directory with `ca.pem`, so a reboot keeps the node's identity.
struct Tls {
    cert: String,
    key: String,
}

fn node_tls(dir: &Path, name: &str) -> Result<Tls, Error> {
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("agent-cert.pem"),
        dir.join("agent-key.pem"),
    );
    if let (Ok(cert), Ok(key), true) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
        ca_path.is_file(),
    ) {
        return Ok(Tls { cert, key });
    }
    let failed = |e: rcgen::Error| {
        tool(
            "node boot",
            format!("cannot make the agent's certificate: {e}"),
        )
    };
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("silver node {name} CA"));
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_key = rcgen::KeyPair::generate().map_err(failed)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    // The names a client may use: the forwarded port on loopback, or the node's own name.
    let mut leaf = rcgen::CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        name.to_string(),
    ])
    .map_err(failed)?;
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, format!("silver agent on {name}"));
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = leaf.signed_by(&leaf_key, &issuer).map_err(failed)?;
    let tls = Tls {
        cert: cert.pem(),
        key: leaf_key.serialize_pem(),
    };
    write_private(&key_path, &tls.key)?;
    std::fs::write(&cert_path, &tls.cert).map_err(|e| io(&cert_path, e))?;
    std::fs::write(&ca_path, ca_cert.pem()).map_err(|e| io(&ca_path, e))?;
    Ok(tls)
}

/// The agent section baked into the image (its manifest), where the seed puts the settings.
fn image_agent(image: &Path) -> Result<crate::recipe::Agent, Error> {
    let path = image.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let manifest: crate::bake::ImageManifest = serde_json::from_str(&text).map_err(|e| {
        tool(
            "node boot",
            format!("`{}` is not a silver image manifest: {e}", path.display()),
        )
    })?;
    Ok(manifest.agent)
}

/// Everything that differs per instance, handed over at first boot.
struct Settings<'a> {
    name: &'a str,
    ssh_key: &'a str,
    token: &'a str,
    tls: &'a Tls,
    agent: &'a crate::recipe::Agent,
}

/// A NoCloud seed: `meta-data` and `user-data` on a FAT filesystem labelled CIDATA.
fn make_seed(seed: &Path, s: &Settings) -> Result<(), Error> {
    let dir = seed.with_extension("d");
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let name = s.name;
    let meta = format!("instance-id: {name}\nlocal-hostname: {name}\n");
    let root = s.agent.root.trim_end_matches('/');
    let env = format!(
        "SILVER_TLS_LISTEN={}\nSILVER_TLS_CERT={root}/tls/cert.pem\nSILVER_TLS_KEY={root}/tls/key.pem\n",
        s.agent.remote
    );
    let files = [
        (
            "/root/.ssh/authorized_keys",
            "0600",
            format!("{}\n", s.ssh_key.trim()),
        ),
        (&format!("{root}/token"), "0600", format!("{}\n", s.token)),
        (&format!("{root}/tls/cert.pem"), "0644", s.tls.cert.clone()),
        (&format!("{root}/tls/key.pem"), "0600", s.tls.key.clone()),
        ("/etc/silver/agent.env", "0644", env),
    ];
    let mut user = format!("#cloud-config\nhostname: {name}\ndisable_root: false\nwrite_files:\n");
    for (path, mode, content) in files {
        user.push_str(&format!(
            "  - path: {path}\n    permissions: '{mode}'\n    content: |\n{}",
            indent(&content, 6)
        ));
    }
    std::fs::write(dir.join("meta-data"), meta).map_err(|e| io(&dir, e))?;
    std::fs::write(dir.join("user-data"), user).map_err(|e| io(&dir, e))?;
    let _ = std::fs::remove_file(seed);
    let mut mkfs = Command::new("mkfs.vfat");
    mkfs.args(["-n", "CIDATA", "-C"]).arg(seed).arg("1024");
    run(mkfs, "mkfs.vfat")?;
    let mut copy = Command::new("mcopy");
    copy.arg("-i")
        .arg(seed)
        .arg(dir.join("meta-data"))
        .arg(dir.join("user-data"))
        .arg("::");
    run(copy, "mcopy")?;
    // The token and key are in the seed now; the plain files need not stay.
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A YAML literal block's body: every line indented by `by` spaces.
fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

fn write_private(path: &Path, content: &str) -> Result<(), Error> {
    safefs::write_atomic(path, content.as_bytes(), safefs::WriteOptions::PRIVATE)
        .map_err(|e| io(path, e))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(tool(
            "node",
            format!(
                "`{name}` is not a node name: letters, digits and `-` (it becomes the hostname)"
            ),
        ))
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), Error> {
    let out = cmd
        .output()
        .map_err(|e| tool(what, format!("could not start: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(tool(
        what,
        format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}

fn tool(tool: &str, message: String) -> Error {
    Error::Tool {
        tool: tool.into(),
        message: silver_types::Said::whole(&message, &[]),
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod qemu_tests {
    use super::*;

    #[test]
    fn the_qemu_command_line() {
        let q = QemuInputs {
            image: "/img".into(),
            overlay: "/n/overlay.qcow2".into(),
            seed: "/n/seed.img".into(),
            serial: "/n/serial.log".into(),
            pidfile: "/n/qemu.pid".into(),
            accel: Accel::Tcg,
            memory_mib: 1024,
            ports: Ports {
                ssh: 2222,
                http: 2223,
                agent: 2224,
            },
            remote_port: 7443,
        };
        let cmd = qemu_command(&q);
        let line: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        insta::assert_snapshot!(line.join("\n"), @r"
        qemu-system-x86_64
        -machine
        q35,accel=tcg
        -m
        1024
        -smp
        2
        -display
        none
        -serial
        file:/n/serial.log
        -kernel
        /img/vmlinuz
        -initrd
        /img/initrd.img
        -append
        root=/dev/vda rw console=ttyS0 net.ifnames=0
        -drive
        file=/n/overlay.qcow2,if=virtio,format=qcow2
        -drive
        file=/n/seed.img,if=virtio,format=raw
        -netdev
        user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:2223-:80,hostfwd=tcp:127.0.0.1:2224-:7443
        -device
        virtio-net-pci,netdev=n0
        -daemonize
        -pidfile
        /n/qemu.pid
        ");
    }
}
