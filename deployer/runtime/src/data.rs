//! An app's service data as portable files (design §6): what `silver backup` takes, `restore`
//! puts back, `clear` wipes, and the checkpoint before every `update_fetch` is made of.
//!
//! A backup is a directory of one file per service plus `backup.json` (app, release, time):
//! - `files.tar`, `writable_root.tar`: the service's directory, entries sorted, owners dropped;
//! - `postgresql.sql`: plain SQL that `psql` replays: the schema from `pg_dump`, then every
//!   table's rows as `COPY` blocks, tables sorted by name and rows by their text, then the
//!   sequences, then indexes and constraints. The same data always dumps to the same bytes, so
//!   backups diff well and a checkpoint that changed nothing is seen to be equal.
//!
//! Dumps and restores of a database run as the app's own role, with its password: they can
//! reach only what the app itself can, whichever node or app the backup came from.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::Error;
use crate::paths::AppPaths;
use crate::supervise::AppUser;

/// The file that says what a backup is.
pub const MANIFEST: &str = "backup.json";

pub use silver_wire::api::BackupInfo;

pub use crate::services::AppData;

/// The kinds of data a service keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Files,
    WritableRoot,
    Postgresql,
    Mysql,
    Couchdb,
    Redis,
}

impl Kind {
    pub(crate) fn of(service: &str) -> Option<Kind> {
        match service {
            "files" => Some(Kind::Files),
            "writable_root" => Some(Kind::WritableRoot),
            "postgresql" | "postgis" | "postgres" => Some(Kind::Postgresql),
            "mysql" => Some(Kind::Mysql),
            "couchdb" => Some(Kind::Couchdb),
            "redis" => Some(Kind::Redis),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Files => "files",
            Kind::WritableRoot => "writable_root",
            Kind::Postgresql => "postgresql",
            Kind::Mysql => "mysql",
            Kind::Couchdb => "couchdb",
            Kind::Redis => "redis",
        }
    }

    pub(crate) fn file(self) -> &'static str {
        match self {
            Kind::Files => "files.tar",
            Kind::WritableRoot => "writable_root.tar",
            Kind::Postgresql => "postgresql.sql",
            Kind::Mysql => "mysql.sql",
            Kind::Couchdb => "couchdb.jsonl",
            Kind::Redis => "redis.jsonl",
        }
    }
}

impl AppData<'_> {
    pub(crate) fn kinds(&self) -> BTreeSet<Kind> {
        self.services
            .iter()
            .filter_map(|(s, _)| Kind::of(s))
            .collect()
    }

    /// Whether the app keeps any data a checkpoint would hold.
    pub fn has_data(&self) -> bool {
        !self.kinds().is_empty()
    }
}

/// The runtime's side: the app's services, user and servers come from its config.
impl crate::Runtime {
    /// Runs `job` on a blocking thread over the data of `c`'s app.
    pub(crate) async fn with_data<T: Send + 'static>(
        &self,
        c: &crate::Candidate,
        job: impl FnOnce(&AppData) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let user = match &c.user {
            Some(user) => Some(user.clone()),
            None => self.app_user(&c.app).await?,
        };
        let config = self.config().clone();
        let (app, paths, services) = (c.app.clone(), c.paths.clone(), c.config.services.clone());
        tokio::task::spawn_blocking(move || {
            job(&AppData {
                node: &config.node_id,
                app: &app,
                paths: &paths,
                services: &services,
                user: user.as_ref(),
                postgres: config.postgres.as_ref(),
                redis: &config.redis,
                mysql: &config.mysql,
                couchdb: &config.couchdb,
            })
        })
        .await
        .map_err(|source| Error::Worker {
            doing: "handling the app's data",
            source,
        })?
    }

    /// Dumps the data of `c`'s app into `dir` (made, empty).
    pub async fn backup(&self, c: &crate::Candidate, dir: PathBuf) -> Result<BackupInfo, Error> {
        let release = c.release.clone();
        self.with_data(c, move |d| dump(d, &release, &now_utc(), &dir))
            .await
    }

    /// Takes the checkpoint of `c` (before its `update_fetch`): None when the app keeps no data.
    pub(crate) async fn checkpoint(&self, c: &crate::Candidate) -> Result<Option<PathBuf>, Error> {
        let (release, dir) = (c.release.clone(), c.paths.checkpoint(&c.label));
        self.with_data(c, move |d| {
            if !d.has_data() {
                return Ok(None);
            }
            let parent = d.paths.checkpoints();
            private_dir(&parent)?;
            let fresh = safefs::temp_dir_in(&parent).map_err(|e| Error::io(&parent, e))?;
            dump(d, &release, &now_utc(), fresh.path())?;
            remove_tree(&dir)?;
            std::fs::rename(fresh.keep(), &dir).map_err(|e| Error::io(&dir, e))?;
            Ok(Some(dir))
        })
        .await
    }
}

/// Every checkpoint an app has, oldest first.
pub fn checkpoints(paths: &AppPaths) -> Vec<BackupInfo> {
    let mut all: Vec<BackupInfo> = std::fs::read_dir(paths.checkpoints())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| read_info(&e.path()).ok())
        .collect();
    all.sort_by(|a, b| a.created.cmp(&b.created));
    all
}

/// The longest line of a JSON-lines dump a restore takes: a bound on what one line costs in
/// memory, whatever the dump's size (a 33 KB `.tar.zst` can hold a 1 GiB line).
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Calls `each` with every JSON value of a dump of one per line (`couchdb.jsonl`,
/// `redis.jsonl`) and its line number, streaming: one line in memory at a time, each at most
/// [`MAX_LINE_BYTES`]. Nothing is called without a dump.
pub(crate) fn for_each_json_line(
    dump: Option<&Path>,
    mut each: impl FnMut(usize, serde_json::Value) -> Result<(), Error>,
) -> Result<(), Error> {
    use std::io::BufRead;
    let Some(path) = dump else {
        return Ok(());
    };
    let mut reader = std::io::BufReader::new(open_dump(path)?);
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(Error::BadBackup {
                path: path.to_path_buf(),
                why: format!("line {number} is longer than {} MiB", MAX_LINE_BYTES >> 20),
            });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value = serde_json::from_slice(&line).map_err(|e| Error::BadBackup {
            path: path.to_path_buf(),
            why: format!("line {number}: {e}"),
        })?;
        each(number, value)?;
    }
    Ok(())
}

pub(crate) fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // `2026-11-30 10:49:35 UTC` as RFC 3339, which sorts as text and every tool reads.
    silver_wire::api::utc(secs)
        .replacen(' ', "T", 1)
        .replace(" UTC", "Z")
}

/// Writes every service's dump and `backup.json` into `dir` (made, empty, by the caller).
pub fn dump(d: &AppData, release: &str, created: &str, dir: &Path) -> Result<BackupInfo, Error> {
    let kinds = d.kinds();
    for kind in &kinds {
        let out = dir.join(kind.file());
        match kind {
            Kind::Files => tar_dir(&d.paths.files(), &out)?,
            Kind::WritableRoot => tar_dir(&d.paths.writable_root(), &out)?,
            Kind::Postgresql => pg_dump(d, &out)?,
            Kind::Mysql => crate::mysql::dump(d.node, d.app, d.paths, d.mysql, d.user, &out)?,
            Kind::Couchdb => crate::couchdb::dump(d.node, d.app, d.couchdb, &out)?,
            Kind::Redis => crate::redis::dump(d.node, d.app, d.redis, &out)?,
        }
    }
    let info = BackupInfo {
        format: 1,
        app: d.app.clone(),
        release: release.to_string(),
        created: created.to_string(),
        services: kinds.iter().map(|k| k.name().to_string()).collect(),
    };
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&info).expect("plain data");
    safefs::write_atomic(&path, &json, safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(&path, e))?;
    Ok(info)
}

/// Reads and checks a backup's `backup.json`.
pub fn read_info(dir: &Path) -> Result<BackupInfo, Error> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let info: BackupInfo = serde_json::from_slice(&text).map_err(|e| Error::BadBackup {
        path: path.clone(),
        why: e.to_string(),
    })?;
    if info.format != 1 {
        return Err(Error::BadBackup {
            path,
            why: format!("format {} is newer than this node knows (1)", info.format),
        });
    }
    Ok(info)
}

/// The kinds of data `info` holds, each one the app has and each dump a plain file no one
/// else may write: a link in a backup directory would make the agent (root) read whatever it
/// points to, such as another app's checkpoint, and restore it as this app's.
pub(crate) fn kinds_of_backup(
    d: &AppData,
    info: &BackupInfo,
    dir: &Path,
) -> Result<Vec<Kind>, Error> {
    let have = d.kinds();
    let mut kinds = Vec::new();
    for service in &info.services {
        let kind = Kind::of(service)
            .filter(|k| have.contains(k))
            .ok_or_else(|| Error::BackupServiceMissing {
                app: d.app.clone(),
                service: service.clone(),
            })?;
        let file = dir.join(kind.file());
        open_dump(&file).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::BadBackup {
                    path: file.clone(),
                    why: "it is missing, though backup.json lists its service".into(),
                }
            }
            e => e,
        })?;
        kinds.push(kind);
    }
    Ok(kinds)
}

/// Opens a dump of a backup: a regular file, not through a link, that no one else may write.
pub(crate) fn open_dump(path: &Path) -> Result<std::fs::File, Error> {
    safefs::open_plain(path)
        .map_err(|e| Error::io(path, e))?
        .map_err(|why| Error::BadBackup {
            path: path.to_path_buf(),
            why: why.to_string(),
        })
}

/// A directory only the agent's user may enter (0700), made if missing and narrowed if not:
/// checkpoints and restores in progress hold every app's data.
pub(crate) fn private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))
}

/// Writes `src` as a tar: entries in name order, owners dropped, times and modes kept. Files
/// are opened without following links: the app owns the tree and could swap a file for a link
/// to a root-only file between the listing and the read (a backup that leaks `/etc/shadow`).
fn tar_dir(src: &Path, out: &Path) -> Result<(), Error> {
    let file = safefs::create_private(out).map_err(|e| Error::io(out, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    if src.is_dir() {
        for entry in walkdir::WalkDir::new(src)
            .min_depth(1)
            .sort_by_file_name()
            .follow_links(false)
        {
            let entry = entry.map_err(|e| Error::io(src, e.into()))?;
            append(&mut tar, src, entry.path())?;
        }
    }
    tar.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(out, e))
}

fn append<W: Write>(tar: &mut tar::Builder<W>, root: &Path, path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let io = |e| Error::io(path, e);
    let name = path.strip_prefix(root).expect("walked under root");
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
    header.set_mtime(meta.mtime().max(0) as u64);
    let kind = meta.file_type();
    if kind.is_dir() {
        tar.append_data(&mut header, name, std::io::empty())
            .map_err(io)
    } else if kind.is_symlink() {
        let target = std::fs::read_link(path).map_err(io)?;
        header.set_size(0);
        tar.append_link(&mut header, name, target).map_err(io)
    } else if kind.is_file() {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?;
        // A file that grew since its listing is cut at the size the header says; one that
        // shrank fails the append: the tar never disagrees with itself.
        tar.append_data(&mut header, name, file.take(meta.len()))
            .map_err(io)
    } else {
        // Sockets and FIFOs are not data.
        Ok(())
    }
}

/// Replaces `dst` with the tar's contents, built beside it and swapped in, so a bad archive
/// leaves the old contents whole. Only files, directories and links inside `dst` come out, and
/// the tree is given to `user`: for uploaded app configs (`--config DIR`); a backup's trees
/// go through `restore.rs`, which stages them with [`dir_stage`] first.
pub fn untar_dir(tar_file: &Path, dst: &Path, user: Option<&AppUser>) -> Result<(), Error> {
    build_beside(dst, user, |fresh| untar_into(tar_file, fresh))?;
    dir_switch(dst)
}

/// Stages a restore of the directory `dst` from the tar `dump` (None: empty) as
/// `.<name>.restoring`, private to the agent until it is whole, then the app's.
pub(crate) fn dir_stage(
    dst: &Path,
    user: Option<&AppUser>,
    dump: Option<&Path>,
) -> Result<(), Error> {
    build_beside(dst, user, |fresh| match dump {
        Some(tar_file) => untar_into(tar_file, fresh),
        None => Ok(()),
    })
}

/// Swaps a staged directory in; nothing to do when it was swapped already (it is gone).
pub(crate) fn dir_switch(dst: &Path) -> Result<(), Error> {
    let parent = dst.parent().expect("an app directory has a parent");
    let (fresh, old) = (sibling(dst, "restoring"), sibling(dst, "replaced"));
    if std::fs::symlink_metadata(&fresh).is_ok() {
        if std::fs::symlink_metadata(dst).is_ok() {
            remove_tree(&old)?;
            std::fs::rename(dst, &old).map_err(|e| Error::io(dst, e))?;
        }
        std::fs::rename(&fresh, dst).map_err(|e| Error::io(dst, e))?;
        safefs::sync_dir(parent).map_err(|e| Error::io(parent, e))?;
    }
    remove_tree(&old)
}

/// Drops a staged directory.
pub(crate) fn dir_discard(dst: &Path) -> Result<(), Error> {
    remove_tree(&sibling(dst, "restoring"))
}

fn untar_into(tar_file: &Path, fresh: &Path) -> Result<(), Error> {
    let file = std::fs::File::open(tar_file).map_err(|e| Error::io(tar_file, e))?;
    let mut archive = tar::Archive::new(file);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(false);
    for entry in archive.entries().map_err(|e| Error::io(tar_file, e))? {
        let mut entry = entry.map_err(|e| Error::io(tar_file, e))?;
        let name = entry
            .path()
            .map_err(|e| Error::io(tar_file, e))?
            .into_owned();
        check_entry(tar_file, &name, entry.header())?;
        // `unpack_in` refuses `..` and absolute names and any entry whose parent resolves
        // outside `fresh` through a link the archive made earlier (a tar that writes
        // `link/x` after `link -> /etc` would otherwise write into /etc as root).
        let inside = entry
            .unpack_in(fresh)
            .map_err(|e| Error::io(&fresh.join(&name), e))?;
        if !inside {
            return Err(Error::BadBackup {
                path: tar_file.to_path_buf(),
                why: format!("entry `{}` points outside its directory", name.display()),
            });
        }
    }
    Ok(())
}

/// Only plain files, directories and symbolic links come back from a backup: a device node
/// would hand the app raw disks, a hard link could tie its file to one outside the tree.
fn check_entry(tar_file: &Path, name: &Path, header: &tar::Header) -> Result<(), Error> {
    use tar::EntryType;
    let kind = header.entry_type();
    if !matches!(
        kind,
        EntryType::Regular | EntryType::Directory | EntryType::Symlink
    ) {
        return Err(Error::BadBackup {
            path: tar_file.to_path_buf(),
            why: format!(
                "entry `{}` is a {kind:?}, and only files, directories and links are restored",
                name.display()
            ),
        });
    }
    // Set-id bits would let the app run a restored file as root's group or another user.
    if header.mode().unwrap_or(0) & 0o7000 != 0 {
        return Err(Error::BadBackup {
            path: tar_file.to_path_buf(),
            why: format!("entry `{}` has set-id or sticky bits", name.display()),
        });
    }
    Ok(())
}

/// Fills a new private directory beside `dst` (`.<name>.restoring`, 0700 from the start, so
/// no other app reads what it holds, even after a crash) with `fill`, gives it to the app, and
/// syncs it: once a restore's journal says it is staged, it survives a power cut.
fn build_beside(
    dst: &Path,
    user: Option<&AppUser>,
    fill: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let fresh = sibling(dst, "restoring");
    remove_tree(&fresh)?;
    safefs::create_private_dir(&fresh).map_err(|e| Error::io(&fresh, e))?;
    let built = fill(&fresh)
        .and_then(|()| own_tree(&fresh, user))
        .and_then(|()| {
            let dir = std::fs::File::open(&fresh).map_err(|e| Error::io(&fresh, e))?;
            rustix::fs::syncfs(&dir).map_err(|e| Error::io(&fresh, e.into()))
        });
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(e);
    }
    Ok(())
}

fn sibling(dir: &Path, what: &str) -> PathBuf {
    let name = dir.file_name().expect("named").to_string_lossy();
    dir.with_file_name(format!(".{name}.{what}"))
}

fn remove_tree(dir: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// Gives a restored tree to the app's user (links themselves, never what they point to); the
/// top directory private as provisioning makes it.
fn own_tree(dir: &Path, user: Option<&AppUser>) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let Some(user) = user else {
        return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e));
    };
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.map_err(|e| Error::io(dir, e.into()))?;
        std::os::unix::fs::lchown(entry.path(), Some(user.uid), Some(user.gid))
            .map_err(|e| Error::io(entry.path(), e))?;
    }
    crate::live::own_private_dir(dir, user)
}

/// How `psql` and `pg_dump` log in as the app: its role, its database, its password, the
/// latter only in the environment of the child, which only the agent's user can read.
fn pg_login(d: &AppData, program: &str) -> Result<Command, Error> {
    let pg = d.postgres.ok_or_else(|| Error::NoPostgres {
        app: d.app.clone(),
        service: "postgresql".into(),
    })?;
    let name = crate::identity::Identity::of(d.node, d.app).name;
    let password = crate::services::pg_password(d.paths)?;
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("PGHOST", &pg.host)
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", &name)
        .env("PGDATABASE", &name)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10");
    // The tools read what the app wrote (names, comments, rows): they run as the app, so
    // a dump crafted to escape into a shell (`\!`) gets no more than the app already has.
    if let Some(user) = d.user {
        use std::os::unix::process::CommandExt;
        cmd.uid(user.uid).gid(user.gid).current_dir("/");
    }
    Ok(cmd)
}

/// What a tool reads on stdin: a head written first, then a file streamed behind it (never
/// read whole into memory: a dump may be larger than the agent's memory).
type Input = (Vec<u8>, Option<std::fs::File>);

/// Runs a tool to the end; its stdout, or `DatabaseTool` with its first error line.
fn run_pg(mut cmd: Command, program: &str, input: Option<Input>) -> Result<Vec<u8>, Error> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| Error::NoPsql {
        program: program.into(),
        source,
    })?;
    if let Some((head, body)) = input {
        let mut stdin = child.stdin.take().expect("piped");
        // Written from a thread: a large restore must not wait on psql's output, nor psql on it.
        std::thread::spawn(move || -> std::io::Result<()> {
            stdin.write_all(&head)?;
            if let Some(mut body) = body {
                std::io::copy(&mut body, &mut stdin)?;
            }
            Ok(())
        });
    }
    let out = child
        .wait_with_output()
        .map_err(|source| Error::PostgresPipe { source })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let message = err
            .lines()
            .find(|l| l.contains("ERROR") || l.contains("error") || l.contains("FATAL"))
            .or(err.lines().next())
            .unwrap_or("(no message)");
        return Err(Error::DatabaseTool {
            program: program.into(),
            message: message.to_string(),
        });
    }
    Ok(out.stdout)
}

fn psql(d: &AppData, sql: &str) -> Result<Vec<u8>, Error> {
    let mut cmd = pg_login(d, "psql")?;
    // Fields apart by a control character no name or column list holds unquoted... or quoted.
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-F",
        "\u{1f}",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ]);
    run_pg(cmd, "psql", None)
}

/// One section of `pg_dump`'s schema, without the per-run `\restrict` keys (restores add one).
fn pg_schema(d: &AppData, section: &str) -> Result<String, Error> {
    let mut cmd = pg_login(d, "pg_dump")?;
    cmd.args(["--no-owner", "--no-privileges", "--section", section]);
    let out = run_pg(cmd, "pg_dump", None)?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        // The node installs extensions (`postgis`) itself; the app's role may not.
        .filter(|l| !l.starts_with("CREATE EXTENSION ") && !l.starts_with("COMMENT ON EXTENSION "))
        .map(|l| format!("{l}\n"))
        .collect())
}

/// The app's tables with their columns (generated ones left out: they are computed again).
const TABLES: &str = "SELECT t, cols FROM (SELECT format('%I.%I', n.nspname, c.relname) AS t, \
     string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) AS cols \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     AND a.attgenerated = '' \
     WHERE c.relkind = 'r' AND pg_get_userbyid(c.relowner) = current_user \
     GROUP BY 1) s ORDER BY t COLLATE \"C\"";

const SEQUENCES: &str = "SELECT line FROM (SELECT format('SELECT pg_catalog.setval(%L, %s, %s);', \
     format('%I.%I', schemaname, sequencename), coalesce(last_value, start_value), \
     CASE WHEN last_value IS NULL THEN 'false' ELSE 'true' END) AS line FROM pg_sequences WHERE sequenceowner = current_user) s \
     ORDER BY line COLLATE \"C\"";

fn pg_dump(d: &AppData, out: &Path) -> Result<(), Error> {
    let mut sql = String::from("-- silver backup of a PostgreSQL database: replay with psql\n");
    sql += &pg_schema(d, "pre-data")?;
    sql += "\n-- Data, tables by name and rows by their text\n\n";
    let tables = String::from_utf8_lossy(&psql(d, TABLES)?).into_owned();
    for line in tables.lines().filter(|l| !l.is_empty()) {
        let (table, columns) = line
            .split_once('\u{1f}')
            .ok_or_else(|| Error::DatabaseTool {
                program: "psql".into(),
                message: format!("unexpected table listing `{line}`"),
            })?;
        let rows = psql(
            d,
            &format!(
                "COPY (SELECT {columns} FROM {table} AS r ORDER BY r::text COLLATE \"C\") TO STDOUT"
            ),
        )?;
        sql += &format!("COPY {table} ({columns}) FROM stdin;\n");
        sql += &String::from_utf8_lossy(&rows);
        sql += "\\.\n\n";
    }
    sql += &String::from_utf8_lossy(&psql(d, SEQUENCES)?);
    sql += &pg_schema(d, "post-data")?;
    safefs::write_atomic(out, sql.as_bytes(), safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(out, e))
}

/// Builds `<identity>-restore`, a database of the app's role's own, from `dump` (None:
/// empty). The dump is replayed as the app's role connected to that database alone, behind a
/// `\restrict` key: its `COMMIT`, a bad statement halfway or a crash leave the live database
/// as it was.
pub(crate) fn pg_stage(d: &AppData, dump: Option<&Path>) -> Result<(), Error> {
    let pg = pg_admin(d)?;
    let id = crate::identity::Identity::of(d.node, d.app);
    let staging = id.staging("restore");
    let admin = |sql: &str| crate::services::admin_psql(pg, None, sql, &[]);
    admin(&format!(
        "DROP DATABASE IF EXISTS \"{staging}\" WITH (FORCE)"
    ))?;
    admin(&format!(
        "CREATE DATABASE \"{staging}\" OWNER \"{}\"",
        id.name
    ))?;
    admin(&format!("REVOKE ALL ON DATABASE \"{staging}\" FROM PUBLIC"))?;
    if d.services.iter().any(|(s, _)| s == "postgis") {
        crate::services::admin_psql(
            pg,
            Some(&staging),
            "CREATE EXTENSION IF NOT EXISTS postgis",
            &[],
        )?;
    }
    let mut head = Vec::new();
    // Meta-commands (`\!` runs a shell, `\connect` another database) are refused from here
    // on: the dump is the app's data.
    let key = safefs::secret_hex(16).map_err(|e| Error::io(Path::new("/dev/urandom"), e))?;
    writeln!(head, "\\restrict {key}").expect("to memory");
    head.extend_from_slice(b"SET client_min_messages = warning;\n");
    let body = dump.map(open_dump).transpose()?;
    let mut cmd = pg_login(d, "psql")?;
    cmd.env("PGDATABASE", &staging).args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-f",
        "-",
    ]);
    run_pg(cmd, "psql", Some((head, body))).map(|_| ())
}

/// Swaps the staged database in: the live one is closed to new connections and its sessions
/// ended, then both are renamed in one transaction, then the old one dropped. Nothing to swap
/// when the staged one is gone (it was swapped in already).
pub(crate) fn pg_switch(d: &AppData) -> Result<(), Error> {
    let pg = pg_admin(d)?;
    let id = crate::identity::Identity::of(d.node, d.app);
    let (live, staging, old) = (&id.name, id.staging("restore"), id.staging("old"));
    let admin = |sql: &str| crate::services::admin_psql(pg, None, sql, &[]);
    let exists = |name: &str| -> Result<bool, Error> {
        let found = admin(&format!(
            "SELECT 1 FROM pg_database WHERE datname = '{name}'"
        ))?;
        Ok(found.trim() == "1")
    };
    if exists(&staging)? {
        admin(&format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)"))?;
        let swap = if exists(live)? {
            admin(&format!(
                "ALTER DATABASE \"{live}\" ALLOW_CONNECTIONS false"
            ))?;
            // Waits (up to 10 s each) until the sessions are gone: a rename needs none.
            admin(&format!(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
                 WHERE datname = '{live}' AND pid <> pg_backend_pid()"
            ))?;
            format!(
                "BEGIN; ALTER DATABASE \"{live}\" RENAME TO \"{old}\"; \
                 ALTER DATABASE \"{staging}\" RENAME TO \"{live}\"; COMMIT;"
            )
        } else {
            format!("ALTER DATABASE \"{staging}\" RENAME TO \"{live}\"")
        };
        admin(&swap)?;
    }
    admin(&format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)")).map(|_| ())
}

/// Drops the staged database (and the sessions a killed restore left on it).
pub(crate) fn pg_discard(d: &AppData) -> Result<(), Error> {
    let pg = pg_admin(d)?;
    let staging = crate::identity::Identity::of(d.node, d.app).staging("restore");
    crate::services::admin_psql(
        pg,
        None,
        &format!("DROP DATABASE IF EXISTS \"{staging}\" WITH (FORCE)"),
        &[],
    )
    .map(|_| ())
}

fn pg_admin<'a>(d: &AppData<'a>) -> Result<&'a crate::services::Postgres, Error> {
    d.postgres.ok_or_else(|| Error::NoPostgres {
        app: d.app.clone(),
        service: "postgresql".into(),
    })
}
