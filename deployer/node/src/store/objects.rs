//! Content-addressed objects: `objects/ab/cdef…` (0444, named by BLAKE3), the `.x` 0555 twin
//! of an executable, and uploads in flight in `objects/tmp`, verified and committed in batches.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use packer::Hash;

use super::*;
use crate::error::Error;

impl Store {
    // ---- objects ----

    pub fn object_path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.layout.object(&hex)
    }

    pub fn has_object(&self, hash: &Hash) -> bool {
        self.object_path(hash).is_file()
    }

    /// Starts receiving one object; its bytes are hashed as they arrive.
    pub fn object_writer(&self) -> Result<ObjectWriter, Error> {
        let (file, path) = temp_file(&self.layout.objects_tmp())?;
        Ok(ObjectWriter {
            file,
            path,
            hasher: blake3::Hasher::new(),
            written: 0,
        })
    }

    /// Bytes free for unprivileged use on the store's file system.
    pub fn free_bytes(&self) -> Result<u64, Error> {
        let stat =
            rustix::fs::statvfs(self.root()).map_err(|e| Error::io(self.root(), e.into()))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Hardlinks share a mode, so executables link to a 0555 copy of the object.
    pub(super) fn exec_twin(&self, hash: &Hash) -> Result<PathBuf, Error> {
        let object = self.object_path(hash);
        let twin = object.with_extension("x");
        if twin.is_file() {
            return Ok(twin);
        }
        let (mut file, tmp) = temp_file(&self.layout.objects_tmp())?;
        let mut src = File::open(&object).map_err(|e| Error::io(&object, e))?;
        io::copy(&mut src, &mut file).map_err(|e| Error::io(&tmp, e))?;
        file.set_permissions(fs::Permissions::from_mode(0o555))
            .map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        // Another stage (of another app) may have made the twin meanwhile: it stays.
        place(&tmp, &twin)?;
        Ok(twin)
    }
}

/// A verified object waiting in `objects/tmp` for its batch to be committed.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    hash: Hash,
}

impl Store {
    /// Makes a batch of verified objects durable and visible: one `syncfs` for all their bytes,
    /// then each renamed to its name, then one more `syncfs` for the renames. An object never
    /// appears under its name before its content is on disk, and there is no fsync per file.
    pub fn commit(&self, batch: Vec<Pending>) -> Result<(), Error> {
        let tmp = self.layout.objects_tmp();
        let result = (|| {
            let dir = File::open(&tmp).map_err(|e| Error::io(&tmp, e))?;
            rustix::fs::syncfs(&dir).map_err(|e| Error::io(&tmp, e.into()))?;
            for pending in &batch {
                let dest = self.object_path(&pending.hash);
                mkdir_p(dest.parent().expect("objects are sharded"))?;
                place(&pending.path, &dest)?;
            }
            rustix::fs::syncfs(&dir).map_err(|e| Error::io(&tmp, e.into()))
        })();
        if result.is_err() {
            for pending in &batch {
                let _ = fs::remove_file(&pending.path);
            }
        }
        result
    }

    /// Abandons verified objects that will not be committed.
    pub fn discard(&self, batch: Vec<Pending>) {
        for pending in batch {
            let _ = fs::remove_file(pending.path);
        }
    }
}

/// Moves a verified object to its name, unless an object of that name (so of that content)
/// is there already: then the copy goes.
///
/// Blocks a race between two uploads of one object and a release being staged from it: a
/// rename over the object would leave the old inode with no name, and a `link(2)` that had
/// looked it up fails with ENOENT (seen as a deploy failing at stage under load).
fn place(pending: &std::path::Path, dest: &std::path::Path) -> Result<(), Error> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, pending, CWD, dest, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => {
            fs::remove_file(pending).map_err(|e| Error::io(pending, e))
        }
        Err(e) => Err(Error::io(dest, e.into())),
    }
}

/// One object arriving: written to `objects/tmp`, hashed on the way.
pub struct ObjectWriter {
    file: File,
    path: PathBuf,
    hasher: blake3::Hasher,
    pub written: u64,
}

impl ObjectWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Checks the bytes against `expected`. A verified object stays in `objects/tmp` until
    /// [`Store::commit`] moves a whole batch into place; a mismatch is refused and removed.
    pub fn finish(self, expected: &Hash) -> Result<Pending, Error> {
        let actual = Hash::from(self.hasher.finalize());
        if &actual != expected {
            let _ = fs::remove_file(&self.path);
            return Err(Error::HashMismatch {
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
        if let Err(e) = self.file.set_permissions(fs::Permissions::from_mode(0o444)) {
            let _ = fs::remove_file(&self.path);
            return Err(Error::io(&self.path, e));
        }
        Ok(Pending {
            path: self.path,
            hash: *expected,
        })
    }

    pub fn abandon(self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One object uploaded again and again (as by concurrent deploys of releases that share it)
    /// while a release is staged from it: every link finds it.
    #[test]
    fn an_object_committed_again_never_breaks_a_link_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), packer::Limits::default()).unwrap();
        let bytes = b"body { color: black }\n";
        let hash = Hash::from(blake3::hash(bytes));
        let upload = || {
            let mut writer = store.object_writer().unwrap();
            writer.write(bytes).unwrap();
            store.commit(vec![writer.finish(&hash).unwrap()]).unwrap();
        };
        upload();
        let links = tmp.path().join("links");
        std::fs::create_dir(&links).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| (0..300).for_each(|_| upload()));
            s.spawn(|| {
                for i in 0..3000 {
                    let target = links.join(i.to_string());
                    std::fs::hard_link(store.object_path(&hash), &target).unwrap();
                    std::fs::remove_file(&target).unwrap();
                }
            });
        });
    }
}
