//! Real servers the system tier runs, each private to its test on a loopback port:
//! PostgreSQL, MariaDB, Redis and pouchdb-server (CouchDB's API).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A throwaway PostgreSQL cluster on a loopback port: `postgres` is trusted from loopback (the
/// agent's admin), every other role needs its password.
pub struct Cluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub port: u16,
}

pub fn as_postgres(program: &Path) -> Command {
    if rustix_is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

pub fn rustix_is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
}

impl Cluster {
    pub fn start(parent: &Path) -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/install-deps.sh)")
            .map(|e| e.unwrap().path().join("bin"))
            .max()
            .unwrap();
        let dir = parent.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        if rustix_is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let out = as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(&dir)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(
            dir.join("pg_hba.conf"),
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&dir)
            .args(["-w", "-l"])
            .arg(dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1",
                dir.display()
            ))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster { dir, bin, port }
    }

    pub fn admin_url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Turns TLS on, with a certificate for 127.0.0.1 from a CA of its own (made with
    /// `openssl`); answers with the CA's certificate, to trust as a root.
    pub fn enable_tls(&self) -> PathBuf {
        let (cert, key) = (self.dir.join("server.crt"), self.dir.join("server.key"));
        let ca = self.dir.join("../pg-ca.crt");
        let script = "set -e; cd \"$WORK\"
            ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
            openssl req -x509 $ec -days 2 -subj '/CN=test CA' -keyout pg-ca.key -out pg-ca.crt
            openssl req $ec -subj /CN=127.0.0.1 -keyout \"$KEY\" -out server.csr
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > server.ext
            openssl x509 -req -days 2 -in server.csr -CA pg-ca.crt -CAkey pg-ca.key \\
              -CAcreateserial -extfile server.ext -out \"$CERT\"";
        let out = Command::new("sh")
            .args(["-c", script])
            .env("WORK", self.dir.parent().unwrap())
            .env("KEY", &key)
            .env("CERT", &cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if rustix_is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .args([&cert, &key])
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let conf = self.dir.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
        text.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).unwrap();
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.dir)
            .arg("reload")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl reload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The reload is asynchronous: wait until a TLS client is answered.
        let ready = (0..100).any(|_| {
            let ok = Command::new("openssl")
                .args(["s_client", "-starttls", "postgres", "-connect"])
                .arg(format!("127.0.0.1:{}", self.port))
                .stdin(std::process::Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                std::thread::sleep(Duration::from_millis(50));
            }
            ok
        });
        assert!(ready, "PostgreSQL did not turn TLS on");
        ca
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A throwaway Redis on a loopback port, without persistence; stopped when dropped.
pub struct RedisServer {
    pub child: std::process::Child,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/install-deps.sh installs it)");
        // Ready once it answers PING.
        super::eventually(
            Duration::from_secs(30),
            "redis-server answers",
            || match redis_answers(port) {
                true => Ok(()),
                false => Err("no PONG".into()),
            },
        );
        RedisServer { child, port }
    }
}

pub fn redis_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut buf = [0; 7];
    conn.write_all(b"PING\r\n").is_ok() && conn.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway MariaDB server on a loopback port, as Debian's `mariadb-server` runs it, with an
/// administrator `admin` that logs in over TCP with a password (the agent's `--mysql-url`).
pub struct MariaDb {
    pub child: std::process::Child,
    pub port: u16,
}

impl MariaDb {
    pub fn start(parent: &Path) -> MariaDb {
        let dir = parent.join("mysql");
        // A temp directory of its own: parallel tests' servers sharing /tmp collide on their
        // temporary tables' file names while they bootstrap.
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let user = if rustix_is_root() { "mysql" } else { "" };
        if !user.is_empty() {
            let ok = Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=socket", "--skip-test-db"]);
        if !user.is_empty() {
            install.arg(format!("--user={user}"));
        }
        let out = install
            .output()
            .expect("MariaDB is installed (scripts/install-deps.sh)");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let socket = dir.join("sock");
        let mut server = Command::new("mariadbd");
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
            ]);
        if !user.is_empty() {
            server.arg(format!("--user={user}"));
        }
        // Its messages go to err.log (shown if it does not come up).
        let child = server
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let db = MariaDb { child, port };
        // Ready when the socket takes a query.
        let sql = "CREATE USER admin@'127.0.0.1' IDENTIFIED BY 'adminpw'; GRANT ALL ON *.* TO admin@'127.0.0.1' WITH GRANT OPTION;";
        super::eventually(Duration::from_secs(60), "MariaDB takes a query", || {
            let out = Command::new("mariadb")
                .arg(format!("--socket={}", socket.display()))
                .args(["-u", "root", "-e", sql])
                .output()
                .unwrap();
            match out.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    std::fs::read_to_string(dir.join("err.log")).unwrap_or_default()
                )),
            }
        });
        db
    }

    pub fn admin_url(&self) -> String {
        format!("mysql://admin:adminpw@127.0.0.1:{}", self.port)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pouchdb-server` in memory on a loopback port: CouchDB's HTTP API (Debian has no CouchDB).
pub struct PouchServer {
    pub child: std::process::Child,
    pub port: u16,
}

impl PouchServer {
    pub fn start(parent: &Path) -> PouchServer {
        let dir = parent.join("couch");
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // It writes its config and log into its working directory.
        let child = Command::new("pouchdb-server")
            .args([
                "--in-memory",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pouchdb-server is installed (scripts/install-deps.sh)");
        let server = PouchServer { child, port };
        super::eventually(Duration::from_secs(60), "pouchdb-server listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| e.to_string())
        });
        server
    }
}

impl Drop for PouchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
