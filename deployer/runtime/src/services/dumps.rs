//! Reading a backup's dumps as hostile input: plain files only, one bounded line at a time.

use std::io::Read;
use std::path::Path;

use crate::error::{BackupProblem, Error};

/// The longest line of a JSON-lines dump a restore takes: a bound on what one line costs in
/// memory, whatever the dump's size (a 33 KB `.tar.zst` can hold a 1 GiB line).
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Calls `each` with every JSON value of a dump of one per line (`couchdb.jsonl`,
/// `redis.jsonl`) and its line number, streaming: one line in memory at a time, each at most
/// [`MAX_LINE_BYTES`]. Nothing is called without a dump.
pub fn for_each_json_line(
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
                why: BackupProblem::LineTooLong {
                    line: number,
                    max_mib: MAX_LINE_BYTES >> 20,
                },
            });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value = serde_json::from_slice(&line).map_err(|e| Error::BadBackup {
            path: path.to_path_buf(),
            why: BackupProblem::Line {
                line: number,
                said: silver_types::Said::new(&e.to_string(), &[]),
            },
        })?;
        each(number, value)?;
    }
    Ok(())
}

/// Opens a dump of a backup: a regular file, not through a link, that no one else may write.
pub fn open_dump(path: &Path) -> Result<std::fs::File, Error> {
    safefs::open_plain(path)
        .map_err(|e| Error::io(path, e))?
        .map_err(|why| Error::BadBackup {
            path: path.to_path_buf(),
            why: BackupProblem::NotPlain(why),
        })
}

/// A directory only the agent's user may enter (0700), made if missing and narrowed if not:
/// checkpoints and restores in progress hold every app's data.
pub fn private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))
}
