//! `silver backup`, `restore`, `clear` and `checkpoints` against a node (design §6). A backup
//! travels as a tar of its directory (`backup.json` and one dump per service) and is kept where
//! the user says: a directory, a `.tar.zst` or `.tar.gz` file, or `ssh://[user@]host[:port]/path`
//! (either of those, on another machine).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use futures_util::StreamExt;
use silver_types::AppName;
use silver_wire::api::*;

use crate::error::BackupProblem;
use crate::{Error, Node};

/// Where a backup is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Local {
        path: PathBuf,
        format: Format,
    },
    Ssh {
        /// `[user@]host`, never starting with `-` (it would be an ssh option).
        destination: String,
        port: Option<u16>,
        path: String,
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dir,
    TarZst,
    TarGz,
}

impl Format {
    fn of(path: &str) -> Format {
        if path.ends_with(".tar.zst") {
            Format::TarZst
        } else if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
            Format::TarGz
        } else {
            Format::Dir
        }
    }
}

impl Place {
    pub fn parse(text: &str) -> Result<Place, Error> {
        let bad = |why| Error::BadPlace {
            place: text.into(),
            why,
        };
        if !text.starts_with("ssh://") {
            return Ok(Place::Local {
                path: PathBuf::from(text),
                format: Format::of(text),
            });
        }
        let url =
            url::Url::parse(text).map_err(|_| bad("not an ssh://[user@]host[:port]/path URL"))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(bad("it names no host"))?;
        let path = percent_encoding::percent_decode_str(url.path())
            .decode_utf8_lossy()
            .into_owned();
        if host.starts_with('-') || url.username().starts_with('-') {
            return Err(bad(
                "a host may not start with `-` (ssh would read it as an option)",
            ));
        }
        if path.len() <= 1 {
            return Err(bad("it names no path on the host"));
        }
        let destination = match url.username() {
            "" => host.to_string(),
            user => format!("{user}@{host}"),
        };
        Ok(Place::Ssh {
            destination,
            port: url.port(),
            format: Format::of(&path),
            path,
        })
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Local { path, .. } => write!(f, "{}", path.display()),
            Place::Ssh {
                destination, path, ..
            } => write!(f, "ssh://{destination}{path}"),
        }
    }
}

impl Node {
    /// The app `target` names: an app on the node by that name, else the app serving that
    /// location (`host[/path]`), as Silver Lining took either.
    pub async fn resolve_app(&self, target: &str) -> Result<AppName, Error> {
        let health = self.health().await?;
        if let Some(app) = health.apps.iter().find(|a| a.name.as_str() == target) {
            return Ok(app.name.clone());
        }
        let wanted = silver_types::appconfig::Location::parse(target).ok();
        match (
            serving(&health.apps, wanted.as_ref()),
            AppName::parse(target),
        ) {
            (Some(app), _) => Ok(app),
            // A name the node does not know yet (activating a release into a new app): the
            // node answers for it.
            (None, Ok(name)) if !target.contains('/') => Ok(name),
            _ => Err(self.unknown_target(target, &health.apps)),
        }
    }

    /// The app that serves at `location` (or did, until deactivated there); never a name.
    pub async fn app_at(&self, location: &silver_types::Location) -> Result<AppName, Error> {
        let health = self.health().await?;
        serving(&health.apps, Some(location)).ok_or_else(|| Error::NothingServes {
            node: self.url().to_string(),
            location: location.clone(),
            served: health
                .apps
                .iter()
                .flat_map(|a| a.locations.iter().cloned())
                .collect(),
        })
    }

    fn unknown_target(&self, target: &str, apps: &[AppStatus]) -> Error {
        Error::UnknownTarget {
            node: self.url().to_string(),
            target: target.into(),
            apps: apps.iter().map(|a| a.name.to_string()).collect(),
        }
    }

    /// Takes a backup of `app` and keeps it at `dest`.
    pub async fn backup(
        &self,
        app: &AppName,
        who: &str,
        dest: &Place,
    ) -> Result<BackupInfo, Error> {
        let work = safefs::temp_dir("silver-backup").map_err(|e| io(Path::new("/tmp"), e))?;
        let tar = work.path().join("backup.tar");
        let req = self
            .authed(
                self.http
                    .post(self.endpoint(&format!("/v1/apps/{app}/backup"))),
            )
            .query(&[("who", who)]);
        let resp = self.send(req).await?;
        let mut file = safefs::create_private(&tar).map_err(|e| io(&tar, e))?;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.lost(e))?;
            file.write_all(&chunk).map_err(|e| io(&tar, e))?;
        }
        drop(file);
        let dest = dest.clone();
        blocking(move || {
            let dir = work.path().join("backup");
            untar_flat(&tar, &dir)?;
            let info = read_info(&dir, &dest)?;
            keep(&dir, &dest)?;
            Ok(info)
        })
        .await
    }

    /// Restores the backup at `source` onto `app`; returns what the backup says it is.
    pub async fn restore(
        &self,
        app: &AppName,
        who: &str,
        source: &Place,
        limits: RestoreLimits,
    ) -> Result<BackupInfo, Error> {
        let work = safefs::temp_dir("silver-restore").map_err(|e| io(Path::new("/tmp"), e))?;
        let (dir, tar) = (work.path().join("backup"), work.path().join("backup.tar"));
        let (source, d, t) = (source.clone(), dir.clone(), tar.clone());
        blocking(move || {
            fetch(&source, &d, limits)?;
            read_info(&d, &source)?;
            tar_flat(&d, &t)
        })
        .await?;
        let file = tokio::fs::File::open(&tar).await.map_err(|e| io(&tar, e))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let req = self
            .authed(
                self.http
                    .post(self.endpoint(&format!("/v1/apps/{app}/restore"))),
            )
            .query(&[("who", who)])
            .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
            .body(body);
        self.call(req).await
    }

    /// Drops the app's data and runs its `update_fetch` again, its output to `on_line`.
    pub async fn clear(
        &self,
        app: &AppName,
        who: &str,
        on_line: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ActivateResponse, Error> {
        let who = percent_encoding::utf8_percent_encode(who, percent_encoding::NON_ALPHANUMERIC);
        self.activate_watched(&format!("/v1/apps/{app}/clear?who={who}"), &(), on_line)
            .await
    }

    pub async fn checkpoints(&self, app: &AppName) -> Result<CheckpointsView, Error> {
        let req = self.authed(
            self.http
                .get(self.endpoint(&format!("/v1/apps/{app}/checkpoints"))),
        );
        self.call(req).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Worker {
            what: e.to_string(),
        })?
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `backup.json` of a backup copied into `dir` from `place`; its errors name the place,
/// never the work directory it was copied to.
fn read_info(dir: &Path, place: &Place) -> Result<BackupInfo, Error> {
    let path = dir.join("backup.json");
    let bad = |why: BackupProblem| Error::BadBackup {
        place: place.to_string(),
        why,
    };
    let text = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(BackupProblem::NoManifest))
        }
        read => read.map_err(|e| io(&path, e))?,
    };
    serde_json::from_slice(&text).map_err(|e| {
        bad(BackupProblem::Manifest(silver_types::Said::new(
            &e.to_string(),
            &[],
        )))
    })
}

/// Keeps the backup directory `dir` at `dest`, whole or not at all.
fn keep(dir: &Path, dest: &Place) -> Result<(), Error> {
    match dest {
        Place::Local {
            path,
            format: Format::Dir,
        } => {
            if path.exists()
                && std::fs::read_dir(path)
                    .map_err(|e| io(path, e))?
                    .next()
                    .is_some()
            {
                return Err(Error::PlaceTaken {
                    place: dest.to_string(),
                });
            }
            let parent = parent(path);
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            // 0700, its files 0600, from the first byte: a backup holds the app's data and
            // passwords, and a copy a failure leaves behind must be as private.
            let fresh = safefs::temp_dir_in(parent).map_err(|e| io(parent, e))?;
            for name in names(dir) {
                let from = dir.join(&name);
                let mut src = std::fs::File::open(&from).map_err(|e| io(&from, e))?;
                let to = fresh.path().join(&name);
                let mut dst = safefs::create_private(&to).map_err(|e| io(&to, e))?;
                std::io::copy(&mut src, &mut dst).map_err(|e| io(&to, e))?;
                dst.sync_all().map_err(|e| io(&to, e))?;
            }
            let _ = std::fs::remove_dir(path);
            std::fs::rename(fresh.keep(), path).map_err(|e| io(path, e))
        }
        Place::Local { path, format } => {
            if path.exists() {
                return Err(Error::PlaceTaken {
                    place: dest.to_string(),
                });
            }
            let parent = parent(path);
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            let mut file = safefs::temp_file_in(parent, 0o600).map_err(|e| io(parent, e))?;
            compressed_tar(dir, *format, file.as_file_mut()).map_err(|e| io(path, e))?;
            file.as_file().sync_all().map_err(|e| io(path, e))?;
            file.persist_noclobber(path)
                .map_err(|e| io(path, e.error))?;
            Ok(())
        }
        Place::Ssh { path, format, .. } => {
            let quoted = quote(path);
            // Written under a temporary name and moved: an interrupted copy is never taken
            // for a backup.
            let script = match format {
                Format::Dir => format!(
                    "set -e; umask 077; test ! -e {quoted} || test -z \"$(ls -A {quoted})\"; t={quoted}.part; rm -rf \"$t\"; mkdir -p \"$t\"; chmod 700 \"$t\"; tar -x --no-same-permissions -C \"$t\" -f -; rmdir {quoted} 2>/dev/null || true; mv \"$t\" {quoted}"
                ),
                _ => format!(
                    "set -e; test ! -e {quoted}; t={quoted}.part; umask 077; cat > \"$t\"; mv \"$t\" {quoted}"
                ),
            };
            let mut bytes = Vec::new();
            match format {
                Format::Dir => plain_tar(dir, &mut bytes),
                _ => compressed_tar(dir, *format, &mut bytes),
            }
            .map_err(|e| io(dir, e))?;
            ssh(dest, &script, Some(&bytes)).map(|_| ())
        }
    }
}

/// How much a backup may unpack to: a decompression bomb (a 33 KB `.tar.zst` that holds a
/// 1 GiB dump) is refused as it streams, before it costs disk or the node's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreLimits {
    /// The largest dump one backup file may unpack to.
    pub max_entry_bytes: u64,
    /// The most a compressed backup may grow by, once it is past `ratio_grace_bytes`.
    pub max_ratio: u64,
    /// Unpacked bytes below which no ratio is enforced (small dumps compress very well).
    pub ratio_grace_bytes: u64,
}

impl Default for RestoreLimits {
    fn default() -> Self {
        RestoreLimits {
            max_entry_bytes: 64 << 30,
            max_ratio: 200,
            ratio_grace_bytes: 64 << 20,
        }
    }
}

/// Brings the backup at `source` into a new private directory `dir`. A local backup is read as
/// hostile input: its path and every file in it must be a plain file or directory (a link
/// would have silver, often root, read whatever it names: another app's checkpoint), not a
/// FIFO (a restore would hang), and not writable by other users.
fn fetch(source: &Place, dir: &Path, limits: RestoreLimits) -> Result<(), Error> {
    let bad = |why: BackupProblem| Error::BadBackup {
        place: source.to_string(),
        why,
    };
    let not_plain = |file: Option<&str>, why| {
        bad(BackupProblem::NotPlain {
            file: file.map(String::from),
            why,
        })
    };
    let bytes = match source {
        Place::Local {
            path,
            format: Format::Dir,
        } => {
            safefs::check_plain_dir(path)
                .map_err(|e| io(path, e))?
                .map_err(|why| not_plain(None, why))?;
            safefs::create_private_dir(dir).map_err(|e| io(dir, e))?;
            for name in present(path) {
                let from = path.join(&name);
                let mut src = safefs::open_plain(&from)
                    .map_err(|e| io(&from, e))?
                    .map_err(|why| not_plain(Some(&name), why))?;
                let to = dir.join(&name);
                let mut dst = safefs::create_private(&to).map_err(|e| io(&to, e))?;
                let mut bounded = (&mut src).take(limits.max_entry_bytes + 1);
                let copied = std::io::copy(&mut bounded, &mut dst).map_err(|e| io(&from, e))?;
                if copied > limits.max_entry_bytes {
                    return Err(bad(BackupProblem::TooLarge {
                        file: name,
                        max: limits.max_entry_bytes,
                    }));
                }
            }
            return Ok(());
        }
        Place::Local { path, format } => {
            let file = safefs::open_plain(path)
                .map_err(|e| io(path, e))?
                .map_err(|why| not_plain(None, why))?;
            return unpack(Box::new(file), *format, dir, source, limits);
        }
        Place::Ssh {
            path,
            format: Format::Dir,
            ..
        } => (format!("cd {} && tar -c -f - .", quote(path)), Format::Dir),
        Place::Ssh { path, format, .. } => (format!("cat {}", quote(path)), *format),
    };
    let (script, format) = bytes;
    ssh_with(source, &script, None, |stdout| {
        unpack(Box::new(stdout), format, dir, source, limits)
    })
}

/// Counts the bytes read through it, for the ratio a decompressor reaches.
struct Counted<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// The decompressed stream, refused once it grows past `limits` against what was read.
struct Bounded<R> {
    inner: R,
    compressed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    out: u64,
    limits: RestoreLimits,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let read = self
            .compressed
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1);
        if self.out > self.limits.ratio_grace_bytes && self.out / read > self.limits.max_ratio {
            return Err(std::io::Error::other(format!(
                "it decompresses to over {} times its size (--max-ratio): a decompression bomb?",
                self.limits.max_ratio
            )));
        }
        Ok(n)
    }
}

/// Unpacks a backup tar (compressed as `format` says) into a new private `dir`: the known
/// files only, each at most `limits.max_entry_bytes`, the whole within `limits.max_ratio`.
fn unpack<'a>(
    input: Box<dyn Read + 'a>,
    format: Format,
    dir: &Path,
    source: &Place,
    limits: RestoreLimits,
) -> Result<(), Error> {
    let compressed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Counted {
        inner: input,
        count: compressed.clone(),
    };
    let decoded: Box<dyn Read + 'a> = match format {
        Format::TarZst => Box::new(zstd::Decoder::new(counted).map_err(|e| io(dir, e))?),
        Format::TarGz => Box::new(flate2::read::GzDecoder::new(counted)),
        Format::Dir => Box::new(counted),
    };
    let input = Bounded {
        inner: decoded,
        compressed,
        out: 0,
        limits: if format == Format::Dir {
            RestoreLimits {
                max_ratio: u64::MAX,
                ..limits
            }
        } else {
            limits
        },
    };
    let refused = safefs::flat_tar::read(input, dir, &BACKUP_FILES, limits.max_entry_bytes)
        .map_err(|e| io(dir, e))?;
    refused.map_err(|why| Error::BadBackup {
        place: source.to_string(),
        why: match why {
            safefs::flat_tar::Refused::TooLarge { name, max, .. } => {
                BackupProblem::TooLarge { file: name, max }
            }
            why => BackupProblem::Tar(why),
        },
    })
}

fn untar_flat(tar: &Path, dir: &Path) -> Result<(), Error> {
    let file = std::fs::File::open(tar).map_err(|e| io(tar, e))?;
    let place = Place::Local {
        path: tar.to_path_buf(),
        format: Format::Dir,
    };
    unpack(
        Box::new(file),
        Format::Dir,
        dir,
        &place,
        RestoreLimits::default(),
    )
}

fn tar_flat(dir: &Path, out: &Path) -> Result<(), Error> {
    let mut file = safefs::create_private(out).map_err(|e| io(out, e))?;
    plain_tar(dir, &mut file).map_err(|e| io(out, e))
}

/// The backup file names present in `dir` as any kind of entry (links and FIFOs included, so
/// that reading them refuses them by name), in name order.
fn present(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = BACKUP_FILES
        .iter()
        .filter(|n| std::fs::symlink_metadata(dir.join(n)).is_ok())
        .map(|n| n.to_string())
        .collect();
    names.sort();
    names
}

/// The backup files present in `dir` (one silver made), in name order.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = BACKUP_FILES
        .iter()
        .filter(|n| dir.join(n).is_file())
        .map(|n| n.to_string())
        .collect();
    names.sort();
    names
}

/// The backup as the node reads it and `silver backup` keeps it (`safefs::flat_tar`).
fn plain_tar(dir: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    safefs::flat_tar::write(dir, &BACKUP_FILES, out)
}

fn compressed_tar(dir: &Path, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        Format::TarZst => {
            let mut enc = zstd::Encoder::new(out, 9)?;
            plain_tar(dir, &mut enc)?;
            enc.finish().map(|_| ())
        }
        Format::TarGz => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            plain_tar(dir, &mut enc)?;
            enc.finish().map(|_| ())
        }
        Format::Dir => plain_tar(dir, out),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `text` as one word for the remote shell (the `shlex` crate, as the runtime quotes).
fn quote(text: &str) -> String {
    // NUL ends a C string: no shell word holds one, so none is kept (none reaches here from
    // the CLI, and config values refuse it).
    shlex::try_quote(&text.replace('\0', ""))
        .expect("only NUL fails to quote")
        .into_owned()
}

/// Runs `script` on the place's host over ssh (`$SILVER_SSH`, default `ssh`), with `input` on
/// its stdin; returns its stdout.
fn ssh(place: &Place, script: &str, input: Option<&[u8]>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    ssh_with(place, script, input, |stdout| {
        stdout
            .read_to_end(&mut out)
            .map(|_| ())
            .map_err(|e| io(Path::new(&place.to_string()), e))
    })?;
    Ok(out)
}

/// Runs `script` on the place's host over ssh (`$SILVER_SSH`, default `ssh`), with `input` on
/// its stdin, and hands its stdout to `read` as it streams (a backup fetched this way is never
/// whole in memory). What `read` refused wins (its refusal cut the stream, which then fails
/// ssh too); else an ssh failure is the error.
fn ssh_with(
    place: &Place,
    script: &str,
    input: Option<&[u8]>,
    read: impl FnOnce(&mut dyn Read) -> Result<(), Error>,
) -> Result<(), Error> {
    let Place::Ssh {
        destination, port, ..
    } = place
    else {
        unreachable!("ssh places only")
    };
    let ssh_command = std::env::var("SILVER_SSH").unwrap_or_else(|_| "ssh".into());
    let mut words = ssh_command.split_whitespace();
    let program = words.next().unwrap_or("ssh").to_string();
    let mut cmd = Command::new(&program);
    cmd.args(words).args(["-o", "BatchMode=yes"]);
    if let Some(port) = port {
        cmd.arg("-p").arg(port.to_string());
    }
    cmd.arg("--").arg(destination).arg(script);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let url = place.to_string();
    let mut child = cmd.spawn().map_err(|source| Error::NoSsh {
        url: url.clone(),
        program,
        source,
    })?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || input.map(|i| stdin.write_all(&i)));
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut text);
        text
    });
    let mut stdout = child.stdout.take().expect("piped");
    let read = read(&mut stdout);
    // What `read` left unread (it stopped at an error) must not keep ssh blocked on a pipe.
    drop(stdout);
    let status = child.wait().map_err(|e| io(Path::new(&url), e))?;
    let _ = writer.join();
    let stderr = errors.join().unwrap_or_default();
    if !status.success() && read.is_ok() {
        return Err(Error::Ssh {
            url,
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        });
    }
    read
}

/// The one app among `apps` that serves at `wanted` (a host alone matches any of its paths),
/// else the one deactivated there (`silver activate LOCATION prev` brings it back).
fn serving(apps: &[AppStatus], wanted: Option<&silver_types::Location>) -> Option<AppName> {
    let wanted = wanted?;
    let serves = |l: &String| {
        silver_types::Location::parse(l)
            .is_ok_and(|l| l.host == wanted.host && (wanted.path == "/" || l.path == wanted.path))
    };
    let live: Vec<&AppStatus> = apps
        .iter()
        .filter(|a| a.locations.iter().any(serves))
        .collect();
    let found = match live.is_empty() {
        true => apps
            .iter()
            .filter(|a| a.deactivated.iter().any(serves))
            .collect(),
        false => live,
    };
    match found.as_slice() {
        [one] => Some(one.name.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places() {
        let check = |text: &str, expected: &str| {
            let got = match Place::parse(text) {
                Ok(p) => format!("{p:?}"),
                Err(e) => e.to_string(),
            };
            assert!(got.contains(expected), "{text}: {got}");
        };
        check("backups/blog", "format: Dir");
        check("blog.tar.zst", "format: TarZst");
        check("blog.tar.gz", "format: TarGz");
        check(
            "ssh://me@host:2222/srv/b.tar.zst",
            "destination: \"me@host\", port: Some(2222), path: \"/srv/b.tar.zst\", format: TarZst",
        );
        check("ssh://host/srv/b", "format: Dir");
        check("ssh://host", "names no path");
        check("ssh://-oProxyCommand=x/p", "start with `-`");
    }

    #[test]
    fn every_format_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("backup.json"), "{}").unwrap();
        std::fs::write(src.join("postgresql.sql"), "SELECT 1;\n").unwrap();
        for name in ["dir", "b.tar.zst", "b.tar.gz"] {
            let place = Place::parse(tmp.path().join(name).to_str().unwrap()).unwrap();
            keep(&src, &place).unwrap();
            let err = keep(&src, &place).unwrap_err();
            assert!(err.to_string().contains("already"), "{err}");
            let back = tmp.path().join(format!("{name}.back"));
            fetch(&place, &back, RestoreLimits::default()).unwrap();
            assert_eq!(names(&back), ["backup.json", "postgresql.sql"]);
            assert_eq!(
                std::fs::read_to_string(back.join("postgresql.sql")).unwrap(),
                "SELECT 1;\n"
            );
        }
    }
}
