//! App logs on the node: one file per app and process, rotated by size, read back by
//! `silver logs` (a tail, or a tail that follows).
//!
//! Lines are written as `<UTC time> <release id12> <text>`, so a merged view of several
//! processes sorts by time and every line says which release wrote it.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a process's output goes.
#[derive(Clone)]
pub enum LogSink {
    /// A rotated file under the app's log directory (on a node).
    File(Arc<Mutex<Rotating>>),
    /// The terminal, each line prefixed with the process name (`silver serve`).
    Stderr { prefix: String },
}

impl LogSink {
    pub fn file(path: PathBuf, policy: Rotation) -> io::Result<LogSink> {
        Ok(LogSink::File(Arc::new(Mutex::new(Rotating::open(
            path, policy,
        )?))))
    }

    /// Writes one line (without its newline); errors are reported once on the agent's log
    /// rather than stopping the app, whose output matters less than its running.
    pub fn line(&self, release: &str, text: &str) {
        match self {
            LogSink::File(file) => {
                let line = format!("{} {release} {text}\n", timestamp());
                let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = file.write(line.as_bytes()) {
                    tracing::warn!(path = %file.path.display(), error = %e, "cannot write the app log");
                }
            }
            LogSink::Stderr { prefix } => {
                let _ = writeln!(io::stderr().lock(), "{prefix} | {text}");
            }
        }
    }
}

/// When a log file is rotated, and how many old ones are kept (`web.log.1` … `web.log.N`).
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 10 << 20,
            keep: 5,
        }
    }
}

pub struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
    policy: Rotation,
}

impl Rotating {
    fn open(path: PathBuf, policy: Rotation) -> io::Result<Rotating> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path,
            file,
            size,
            policy,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.policy.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Shifts `log.N-1` to `log.N` down to `log` → `log.1`, then starts an empty file. Readers
    /// that follow notice the new inode and start over.
    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..self.policy.keep).rev() {
            let from = numbered(&self.path, n);
            if from.exists() {
                fs::rename(&from, numbered(&self.path, n + 1))?;
            }
        }
        if self.policy.keep > 0 {
            fs::rename(&self.path, numbered(&self.path, 1))?;
        } else {
            fs::remove_file(&self.path)?;
        }
        *self = Rotating::open(self.path.clone(), self.policy)?;
        Ok(())
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// `2026-11-22T06:15:31.123Z`: sortable, and the same on every node.
pub fn timestamp() -> String {
    silver_wire::api::now_millis()
}

/// The last `lines` lines across `(process, file)` pairs (current files only), merged by their
/// timestamps, each shown as `<time> <process>[<release>]: <text>`.
pub fn tail(files: &[(String, PathBuf)], lines: usize) -> io::Result<Vec<String>> {
    let mut all = Vec::new();
    for (process, path) in files {
        all.extend(last_lines(path, lines)?.iter().map(|l| present(process, l)));
    }
    // Each line starts with its timestamp, so a stable sort merges the processes in time order.
    all.sort_by(|a, b| a.get(..24).cmp(&b.get(..24)));
    let skip = all.len().saturating_sub(lines);
    Ok(all.split_off(skip))
}

/// `<time> <release> <text>` as stored becomes `<time> <process>[<release>]: <text>`.
fn present(process: &str, raw: &str) -> String {
    let mut parts = raw.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(time), Some(release), rest) => {
            format!("{time} {process}[{release}]: {}", rest.unwrap_or_default())
        }
        _ => format!("{process}: {raw}"),
    }
}

/// Opens a log for reading, never through a symlink: `logs/` belongs to the app's user, who
/// could otherwise point `web.log` at `/etc/shadow` and have the agent (root) show it to whoever
/// asks for the logs, or append to it.
fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn last_lines(path: &Path, lines: usize) -> io::Result<Vec<String>> {
    let mut file = match open_log(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    // Rotation bounds a file's size, but read at most the last 4 MiB whatever it is.
    let len = file.metadata()?.len();
    let start = len.saturating_sub(4 << 20);
    file.seek(SeekFrom::Start(start))?;
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    let text = String::from_utf8_lossy(&text);
    let mut keep: VecDeque<String> = VecDeque::with_capacity(lines + 1);
    for line in text.lines() {
        keep.push_back(line.to_string());
        if keep.len() > lines {
            keep.pop_front();
        }
    }
    Ok(keep.into())
}

/// Reads what is appended to `path` from `offset` on, forever, sending whole lines. Starts over
/// when the file is rotated (a new inode) or truncated.
pub async fn follow(
    path: PathBuf,
    process: String,
    tx: tokio::sync::mpsc::Sender<String>,
) -> io::Result<()> {
    let mut offset = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut inode = fs::metadata(&path).map(|m| m.ino()).unwrap_or(0);
    let mut partial = String::new();
    loop {
        if let Ok(meta) = fs::metadata(&path) {
            if meta.ino() != inode || meta.len() < offset {
                inode = meta.ino();
                offset = 0;
                partial.clear();
            }
            if meta.len() > offset {
                let mut file = open_log(&path)?;
                file.seek(SeekFrom::Start(offset))?;
                let mut buf = Vec::new();
                Read::by_ref(&mut file)
                    .take(1 << 20)
                    .read_to_end(&mut buf)?;
                offset += buf.len() as u64;
                partial.push_str(&String::from_utf8_lossy(&buf));
                while let Some(end) = partial.find('\n') {
                    let line: String = partial.drain(..=end).collect();
                    let line = present(&process, line.trim_end_matches('\n')) + "\n";
                    if tx.send(line).await.is_err() {
                        return Ok(());
                    }
                }
                continue;
            }
        }
        if tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_n_files_and_tail_merges_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web.log");
        let sink = LogSink::file(
            web.clone(),
            Rotation {
                max_bytes: 200,
                keep: 2,
            },
        )
        .unwrap();
        for i in 0..40 {
            sink.line("abcdefabcdef", &format!("line {i}"));
        }
        assert!(numbered(&web, 1).exists());
        assert!(numbered(&web, 2).exists());
        assert!(!numbered(&web, 3).exists());
        assert!(fs::metadata(&web).unwrap().len() <= 200);
        let worker = LogSink::file(dir.path().join("worker.log"), Rotation::default()).unwrap();
        worker.line("abcdefabcdef", "from the worker");
        let files = [
            ("web".to_string(), web),
            ("mailer".to_string(), dir.path().join("worker.log")),
        ];
        let lines = tail(&files, 2).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].ends_with(" web[abcdefabcdef]: line 39"),
            "{lines:?}"
        );
        assert!(
            lines[1].ends_with(" mailer[abcdefabcdef]: from the worker"),
            "{lines:?}"
        );
    }

    #[test]
    fn timestamps_sort_as_text() {
        let t = timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
