//! The ssh transport: `ssh -N -L` from a free loopback port to the agent's loopback address on
//! the node, with the system `ssh`, so the user's config, keys and known_hosts apply.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::Error;

/// Where `ssh://[user@]host[:port]` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub destination: String,
    pub port: Option<u16>,
}

impl SshTarget {
    pub fn parse(url: &str) -> Result<SshTarget, Error> {
        let bad = |why: &'static str| Error::BadNode {
            url: url.into(),
            why,
        };
        let rest = url
            .strip_prefix("ssh://")
            .ok_or_else(|| bad("not an ssh:// address"))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(bad("expected ssh://[user@]host[:port] with no path"));
        }
        let (destination, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port.parse().map_err(|_| bad("the port is not a number"))?;
                (host.to_string(), Some(port))
            }
            _ => (rest.to_string(), None),
        };
        if destination.starts_with('-') {
            return Err(bad("a host cannot start with `-`"));
        }
        Ok(SshTarget { destination, port })
    }
}

/// A running tunnel; the ssh process is stopped when this is dropped.
pub struct Tunnel {
    child: Child,
    pub local: SocketAddr,
}

impl Tunnel {
    /// Opens the tunnel and waits until it carries connections. `ssh_command` is the ssh program
    /// and its options (`SILVER_SSH`, like git's `GIT_SSH_COMMAND`), split on whitespace.
    pub fn open(
        target: &SshTarget,
        agent: &str,
        ssh_command: &str,
        url: &str,
    ) -> Result<Tunnel, Error> {
        let local = free_port().map_err(|e| Error::io(std::path::Path::new("127.0.0.1"), e))?;
        let mut words = ssh_command.split_whitespace();
        let program = words.next().unwrap_or("ssh");
        let mut cmd = Command::new(program);
        cmd.args(words)
            .args([
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ServerAliveInterval=15",
            ])
            .arg("-L")
            .arg(format!("{local}:{agent}"));
        if let Some(port) = target.port {
            cmd.arg("-p").arg(port.to_string());
        }
        cmd.arg("--")
            .arg(&target.destination)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        tracing::debug!(destination = %target.destination, %local, agent, "opening ssh tunnel");
        let mut child = cmd.spawn().map_err(|source| Error::NoSsh {
            url: url.into(),
            program: program.to_string(),
            source,
        })?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| Error::io(std::path::Path::new(program), e))?
            {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    let _ = s.read_to_string(&mut err);
                }
                return Err(Error::Ssh {
                    url: url.into(),
                    status: status.to_string(),
                    stderr: err.trim().to_string(),
                });
            }
            if TcpStream::connect_timeout(&local, Duration::from_millis(200)).is_ok() {
                return Ok(Tunnel { child, local });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(Error::TunnelTimeout {
                    url: url.into(),
                    secs: 20,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the agent's token over ssh (`cat` of its token file on the node), for a user who can
/// read it there: then `--node ssh://host` needs no token on this machine. Never logged.
pub fn remote_token(
    target: &SshTarget,
    ssh_command: &str,
    token_file: &str,
    url: &str,
) -> Result<String, Error> {
    let mut words = ssh_command.split_whitespace();
    let program = words.next().unwrap_or("ssh");
    let mut cmd = Command::new(program);
    cmd.args(words).args(["-o", "BatchMode=yes"]);
    if let Some(port) = target.port {
        cmd.arg("-p").arg(port.to_string());
    }
    // The remote side is a shell: the path goes in single quotes.
    let quoted = format!("'{}'", token_file.replace('\'', r"'\''"));
    cmd.arg("--")
        .arg(&target.destination)
        .arg(format!("cat -- {quoted}"))
        .stdin(Stdio::null());
    let out = cmd.output().map_err(|source| Error::NoSsh {
        url: url.into(),
        program: program.to_string(),
        source,
    })?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || token.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::RemoteToken {
            url: url.into(),
            token_file: token_file.to_string(),
            stderr: err.trim().to_string(),
        });
    }
    Ok(token)
}

fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls() {
        let check = |url: &str, expected: Option<(&str, Option<u16>)>| {
            let got = SshTarget::parse(url).ok().map(|t| (t.destination, t.port));
            assert_eq!(got, expected.map(|(d, p)| (d.to_string(), p)), "{url}");
        };
        check(
            "ssh://deploy@example.com",
            Some(("deploy@example.com", None)),
        );
        check("ssh://example.com:2222", Some(("example.com", Some(2222))));
        check("ssh://alias", Some(("alias", None)));
        check("ssh://-oProxyCommand=x", None);
        check("ssh://host/path", None);
        check("ssh://host:port", None);
    }
}
