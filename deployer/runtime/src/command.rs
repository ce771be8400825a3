//! Running a tool to the end, one way for every service: its stdin fed from a thread (so a
//! large restore never waits on the tool's output, nor the tool on it), a deadline past which
//! it is killed, its stdout kept, and its stderr's error line with secrets blotted out.

use std::io::{self, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How long an administrator's statement may take (a role, a grant, a database made).
pub const ADMIN: Duration = Duration::from_secs(120);
/// How long a dump or a restore of an app's data may take.
pub const DATA: Duration = Duration::from_secs(6 * 3600);

/// Writes a tool's stdin, on a thread of its own (a dump streamed from its file).
pub type Writer = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// What a tool reads on stdin.
pub enum Stdin {
    Null,
    Bytes(Vec<u8>),
    Stream(Writer),
}

/// Runs `cmd` with `stdin`, to its end or its deadline (then killed: `TimedOut`). Its exit
/// status is the caller's to judge; `error_line` says what went wrong.
pub fn run(mut cmd: Command, stdin: Stdin, deadline: Duration) -> io::Result<Output> {
    let piped = !matches!(stdin, Stdin::Null);
    cmd.stdin(if piped { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(mut pipe) = child.stdin.take() {
        std::thread::spawn(move || -> io::Result<()> {
            match stdin {
                Stdin::Null => Ok(()),
                Stdin::Bytes(bytes) => pipe.write_all(&bytes),
                Stdin::Stream(write) => write(&mut pipe),
            }
        });
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(deadline) {
        Ok(done) => done,
        Err(_) => {
            // The waiter has not reaped the child (it is still blocked in wait), so the pid
            // still names it; a child that exits in this very instant is the only race.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = rx.recv();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "it did not finish within {} s and was killed",
                    deadline.as_secs()
                ),
            ))
        }
    }
}

/// The line of a tool's stderr that says what failed (the first that names an error, else the
/// first), with each of `secrets` blotted out.
pub fn error_line(stderr: &[u8], secrets: &[&str]) -> silver_types::Said {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.contains("ERROR") || l.contains("error") || l.contains("FATAL"))
        .unwrap_or(&text);
    silver_types::Said::new(line, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_goes_in_and_the_error_line_hides_secrets() {
        let out = run(Command::new("cat"), Stdin::Bytes(b"hello".to_vec()), ADMIN).unwrap();
        assert_eq!(out.stdout, b"hello");
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            "echo 'note' >&2; echo 'ERROR: bad password hunter2' >&2; exit 3",
        ]);
        let out = run(sh, Stdin::Null, ADMIN).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            error_line(&out.stderr, &["hunter2"]).as_str(),
            "ERROR: bad password ***"
        );
    }

    #[test]
    fn a_tool_past_its_deadline_is_killed() {
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let err = run(sleep, Stdin::Null, Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
