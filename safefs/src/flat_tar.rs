//! The flat tar a backup travels in (client to node, node to client): the files of one
//! directory, by a fixed set of names, in name order. One codec for both ends, so they never
//! disagree on headers or checks.

use std::io::{self, Read, Write};
use std::path::Path;

/// Why a flat tar is refused; each names the entry.
#[derive(Debug)]
pub enum Refused {
    /// The stream is not a tar, or ends inside one.
    Corrupt(io::Error),
    /// An entry that is none of the names asked for (`../../etc/cron.d/x`, `extra`).
    Unknown { name: String },
    /// A link, a device or anything but a regular file, under a known name.
    NotPlain { name: String },
    /// An entry larger than the bound.
    TooLarge { name: String, size: u64, max: u64 },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Corrupt(e) => write!(f, "{e}"),
            Refused::Unknown { name } => {
                write!(f, "entry `{name}` is not one of the files a backup holds")
            }
            Refused::NotPlain { name } => write!(f, "entry `{name}` is not a plain file"),
            Refused::TooLarge { name, size, max } => {
                write!(f, "entry `{name}` is {size} bytes, over {max}")
            }
        }
    }
}

/// Writes the regular files of `dir` whose names are in `names`, in name order, with
/// deterministic headers (mode 0600, no owner, the file's own mtime). A name that is missing,
/// or not a regular file, is left out.
pub fn write(dir: &Path, names: &[&str], out: impl Write) -> io::Result<()> {
    let mut present: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| dir.join(n).is_file())
        .collect();
    present.sort_unstable();
    let mut tar = tar::Builder::new(out);
    for name in present {
        let mut file = std::fs::File::open(dir.join(name))?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&file.metadata()?, tar::HeaderMode::Deterministic);
        header.set_mode(0o600);
        tar.append_data(&mut header, name, &mut file)?;
    }
    tar.into_inner()?.flush()
}

/// Reads a flat tar into `dir` (made now, 0700): every entry must be a regular file under one
/// of `names` and at most `max_entry_bytes`; each is written 0600. `.`-style directory entries
/// are skipped. Nothing is written for an entry before its name and kind are checked.
///
/// Blocks: a tar that writes outside `dir` (`../x`, an absolute name), through a link it made,
/// or a device node or FIFO in it; and a name the reader would later trust (only `names` land).
pub fn read(
    input: impl Read,
    dir: &Path,
    names: &[&str],
    max_entry_bytes: u64,
) -> io::Result<Result<(), Refused>> {
    crate::create_private_dir(dir)?;
    let mut archive = tar::Archive::new(input);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return Ok(Err(Refused::Corrupt(e))),
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Ok(Err(Refused::Corrupt(e))),
        };
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let name = match entry.path() {
            Ok(path) => path.to_string_lossy().trim_start_matches("./").to_string(),
            Err(e) => return Ok(Err(Refused::Corrupt(e))),
        };
        let Some(known) = names.iter().find(|n| **n == name) else {
            return Ok(Err(Refused::Unknown { name }));
        };
        if !entry.header().entry_type().is_file() {
            return Ok(Err(Refused::NotPlain { name }));
        }
        if entry.size() > max_entry_bytes {
            let size = entry.size();
            let max = max_entry_bytes;
            return Ok(Err(Refused::TooLarge { name, size, max }));
        }
        let path = dir.join(known);
        let mut out = crate::create_private(&path)?;
        if let Err(e) = copy(&mut entry, &mut out) {
            return match e {
                Copy::Read(e) => Ok(Err(Refused::Corrupt(e))),
                Copy::Write(e) => Err(e),
            };
        }
    }
    Ok(Ok(()))
}

enum Copy {
    Read(io::Error),
    Write(io::Error),
}

/// Copies an entry, telling a failure of the stream (the input's fault) from one of the disk.
fn copy(from: &mut impl Read, to: &mut impl Write) -> Result<(), Copy> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(Copy::Write)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["a.sql", "backup.json", "files.tar"];

    #[test]
    fn round_trip_keeps_only_the_known_files_in_name_order() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for (name, body) in [("backup.json", "{}"), ("a.sql", "select"), ("other", "x")] {
            std::fs::write(src.join(name), body).unwrap();
        }
        let mut bytes = Vec::new();
        write(&src, NAMES, &mut bytes).unwrap();
        let dest = tmp.path().join("dest");
        read(&bytes[..], &dest, NAMES, 1 << 20).unwrap().unwrap();
        let mut got: Vec<String> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        got.sort();
        assert_eq!(got, ["a.sql", "backup.json"]);
        assert_eq!(
            std::fs::read_to_string(dest.join("a.sql")).unwrap(),
            "select"
        );
        // The same files make the same bytes.
        let mut again = Vec::new();
        write(&src, NAMES, &mut again).unwrap();
        assert_eq!(bytes, again);
    }

    /// One entry, raw: (name, type, size).
    fn check(entry: (&str, tar::EntryType, u64), expected: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry.1);
        header.set_size(entry.2);
        header.set_mode(0o600);
        let raw = &mut header.as_old_mut().name;
        raw[..entry.0.len()].copy_from_slice(entry.0.as_bytes());
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(
            0u8,
            (entry.2 as usize).div_ceil(512) * 512,
        ));
        bytes.extend([0u8; 1024]);
        let got = read(&bytes[..], &tmp.path().join("d"), NAMES, 100).unwrap();
        let got = got.map_or_else(|e| e.to_string(), |()| "ok".into());
        assert!(got.contains(expected), "{}: {got}", entry.0);
    }

    #[test]
    fn hostile_entries_are_refused_by_name() {
        use tar::EntryType::*;
        check(("a.sql", Regular, 3), "ok");
        check(("../a.sql", Regular, 3), "not one of the files");
        check(("/etc/passwd", Regular, 3), "not one of the files");
        check(("a.sql", Symlink, 0), "not a plain file");
        check(("a.sql", Fifo, 0), "not a plain file");
        check(("a.sql", Regular, 101), "over 100");
    }
}
