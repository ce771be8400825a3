//! Local nodes: a baked image booted in QEMU (the local provider, Silver Lining's `create-node`).
//!
//! Each node has a state directory (`<nodes>/<name>/`): a copy-on-write overlay over the image's
//! `disk.qcow2`, a cloud-init NoCloud seed (a FAT image labelled CIDATA, made with mtools: no
//! loop mount) carrying the per-instance settings (hostname, authorized SSH key, the agent's
//! token), the serial console log, QEMU's pid, and `node.json`. SSH and the front door are
//! forwarded to loopback: `port_base` and `port_base + 1`.

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
    pub token_file: PathBuf,
    pub serial_log: PathBuf,
}

/// Boots a node and waits until its agent's front door answers. On failure the serial log is
/// kept, and the error carries its tail.
pub fn boot(config: &BootConfig) -> Result<NodeInfo, Error> {
    check_name(&config.name)?;
    let dir = config.nodes_dir.join(&config.name);
    if let Some(info) = read_info(&dir) {
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
    for f in ["disk.qcow2", "vmlinuz", "initrd.img"] {
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
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let image = std::fs::canonicalize(&config.image).map_err(|e| io(&config.image, e))?;
    let overlay = dir.join("overlay.qcow2");
    if !overlay.exists() {
        let mut cmd = Command::new("qemu-img");
        cmd.args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(image.join("disk.qcow2"))
            .arg(&overlay);
        run(cmd, "qemu-img create")?;
    }
    let token = token(&dir)?;
    let seed = dir.join("seed.img");
    make_seed(&seed, &config.name, &config.ssh_key, &token)?;
    let serial = dir.join("serial.log");
    let _ = std::fs::remove_file(&serial);
    let pidfile = dir.join("qemu.pid");
    let (ssh_port, http_port) = (config.port_base, config.port_base + 1);
    let accel = config.accel;
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine",
        &format!(
            "q35,accel={}",
            match accel {
                Accel::Kvm => "kvm",
                Accel::Tcg => "tcg",
            }
        ),
    ])
    .args([
        "-m",
        &config.memory_mib.to_string(),
        "-smp",
        "2",
        "-display",
        "none",
    ])
    .arg("-serial")
    .arg(format!("file:{}", serial.display()))
    .arg("-kernel")
    .arg(image.join("vmlinuz"))
    .arg("-initrd")
    .arg(image.join("initrd.img"))
    .args(["-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0"])
    .arg("-drive")
    .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
    .arg("-drive")
    .arg(format!("file={},if=virtio,format=raw", seed.display()))
    .arg("-netdev")
    .arg(format!(
        "user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22,hostfwd=tcp:127.0.0.1:{http_port}-:80"
    ))
    .args([
        "-device",
        "virtio-net-pci,netdev=n0",
        "-daemonize",
        "-pidfile",
    ])
    .arg(&pidfile);
    run(cmd, "qemu-system-x86_64")?;
    let info = NodeInfo {
        name: config.name.clone(),
        image,
        ssh_port,
        http_port,
        accel,
        pid: read_pid(&pidfile),
        running: true,
        node_url: format!("ssh://root@127.0.0.1:{ssh_port}"),
        front_url: format!("http://127.0.0.1:{http_port}"),
        token_file: dir.join("token"),
        serial_log: serial.clone(),
    };
    let json = serde_json::to_string_pretty(&info).expect("serializable");
    std::fs::write(dir.join("node.json"), json).map_err(|e| io(&dir, e))?;
    let deadline = Instant::now() + config.timeout;
    loop {
        if front_door_answers(http_port) {
            return Ok(info);
        }
        let alive = info.pid.is_some_and(pid_alive);
        if !alive || Instant::now() > deadline {
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
                    serial.display(),
                    tail(&serial, 25)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
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

fn front_door_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: health.invalid\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    // QEMU accepts forwarded connections before the guest listens, then closes them.
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1")
}

/// The agent's token for this node: made once, kept in the state directory (0600), handed to
/// the node through the seed.
fn token(dir: &Path) -> Result<String, Error> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if t.trim().len() == 64 {
            return Ok(t.trim().to_string());
        }
    }
    let mut bytes = [0u8; 32];
    let mut f =
        std::fs::File::open("/dev/urandom").map_err(|e| io(Path::new("/dev/urandom"), e))?;
    std::io::Read::read_exact(&mut f, &mut bytes).map_err(|e| io(Path::new("/dev/urandom"), e))?;
    let token = hex::encode(bytes);
    std::fs::write(&path, &token)
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| io(&path, e))?;
    Ok(token)
}

/// A NoCloud seed: `meta-data` and `user-data` on a FAT filesystem labelled CIDATA.
fn make_seed(seed: &Path, name: &str, ssh_key: &str, token: &str) -> Result<(), Error> {
    let dir = seed.with_extension("d");
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let meta = format!("instance-id: {name}\nlocal-hostname: {name}\n");
    let user = format!(
        "#cloud-config\nhostname: {name}\ndisable_root: false\nwrite_files:\n  - path: /root/.ssh/authorized_keys\n    permissions: '0600'\n    content: |\n      {}\n  - path: /var/lib/silver/token\n    permissions: '0600'\n    content: {token}\n",
        ssh_key.trim()
    );
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
    // The token is in the seed now; the plain files need not stay.
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
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
        message,
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
