//! Debian's `docker-registry` on a loopback port, over a temp directory, killed when dropped;
//! and a proxy in front of it that cuts a response short, for "the registry went away".

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct DockerRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DockerRegistry {
    /// A registry storing under `dir`; with `htpasswd`, only that user and password may use it.
    pub fn start(dir: &Path, htpasswd: Option<(&str, &str)>) -> DockerRegistry {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let auth = match htpasswd {
            Some((user, password)) => {
                let hash = bcrypt::hash(password, 4).unwrap();
                let file = dir.join("htpasswd");
                std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: silver-test\n    path: {}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry runs (scripts/install-deps.sh installs it)");
        let addr = format!("127.0.0.1:{port}");
        super::eventually(Duration::from_secs(20), "docker-registry answers", || {
            TcpStream::connect(&addr)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        DockerRegistry { child, addr }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A proxy to `upstream` that relays every request whole, except that the response to the
/// first GET whose path contains `cut_path` stops after `cut_after` bytes and the connection
/// closes: a registry that goes away in the middle of a blob.
pub fn cutting_proxy(upstream: String, cut_path: String, cut_after: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, cut_path, cut) = (upstream.clone(), cut_path.clone(), cut.clone());
            std::thread::spawn(move || relay(client, &upstream, &cut_path, cut_after, &cut));
        }
    });
    addr
}

/// One connection: requests are read head by head (with their bodies) and answered one at a
/// time, so keep-alive clients work.
fn relay(
    mut client: TcpStream,
    upstream: &str,
    cut_path: &str,
    cut_after: usize,
    cut: &std::sync::atomic::AtomicBool,
) {
    let mut server = TcpStream::connect(upstream).unwrap();
    let mut c2s = client.try_clone().unwrap();
    let mut s_in = server.try_clone().unwrap();
    // Requests go up as they come; the first matching GET arms the cut.
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let armed_up = armed.clone();
    let cut_path = cut_path.to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            let n = match c2s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.starts_with("GET ")
                && text.lines().next().is_some_and(|l| l.contains(&cut_path))
            {
                armed_up.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Write);
    });
    let mut buf = [0u8; 16384];
    let mut sent_armed = 0usize;
    loop {
        let n = match s_in.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if armed.load(std::sync::atomic::Ordering::SeqCst)
            && !cut.load(std::sync::atomic::Ordering::SeqCst)
        {
            let room = cut_after.saturating_sub(sent_armed);
            let take = room.min(n);
            let _ = client.write_all(&buf[..take]);
            sent_armed += take;
            if sent_armed >= cut_after {
                cut.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = client.shutdown(std::net::Shutdown::Both);
                return;
            }
            continue;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}
