//! The `.silver` container: zstd-compressed tar with deterministic headers. Shared by pack and tests.

use std::io::{self, Read, Write};

use crate::manifest::{Entry, Kind};

/// The tar name of the first entry, the manifest.
pub const MANIFEST_NAME: &str = ".silver-manifest";

/// Writes entries with headers that depend only on the entry (and the fixed mtime).
pub struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> TarWriter<W> {
    pub fn new(inner: W, mtime: u64) -> Self {
        TarWriter {
            builder: tar::Builder::new(inner),
            mtime,
        }
    }

    /// The manifest entry, preceded by a PAX `comment` record (ignored by every tar reader, and
    /// outside the manifest bytes, so it never changes the id) when there is a note to carry.
    pub fn manifest(&mut self, bytes: &[u8], note: Option<&str>) -> io::Result<()> {
        if let Some(note) = note {
            let record = pax_record("comment", note);
            let mut header = self.header(tar::EntryType::XHeader, 0o644, record.len() as u64);
            header.set_path("PaxHeader/.silver-manifest")?;
            header.set_cksum();
            self.builder.append(&header, record.as_slice())?;
        }
        let mut header = self.header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        self.builder.append_data(&mut header, MANIFEST_NAME, bytes)
    }

    /// One manifest entry; `content` must yield exactly the entry's size for files.
    pub fn entry(&mut self, entry: &Entry, content: impl Read) -> io::Result<()> {
        let mode = entry.mode();
        match &entry.kind {
            Kind::Dir => {
                let mut header = self.header(tar::EntryType::Directory, mode, 0);
                self.builder
                    .append_data(&mut header, &entry.path, io::empty())
            }
            Kind::File { size, .. } | Kind::Exec { size, .. } => {
                let mut header = self.header(tar::EntryType::Regular, mode, *size);
                self.builder.append_data(&mut header, &entry.path, content)
            }
            Kind::Link { target } => {
                let mut header = self.header(tar::EntryType::Symlink, mode, 0);
                self.builder.append_link(&mut header, &entry.path, target)
            }
        }
    }

    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        // GNU headers with zero owners and no names: nothing from the packing machine leaks in.
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(self.mtime);
        header.set_size(size);
        header
    }
}

/// The tar bytes of the manifest entry alone, without end-of-archive blocks: the archive's first
/// zstd frame holds only these, and the tar stream goes on in the second frame.
pub fn manifest_member(bytes: &[u8], note: Option<&str>, mtime: u64) -> io::Result<Vec<u8>> {
    let mut tar = TarWriter::new(Vec::new(), mtime);
    tar.manifest(bytes, note)?;
    let mut out = tar.finish()?;
    out.truncate(out.len() - 1024);
    Ok(out)
}

/// One PAX extended-header record: `"<len> <key>=<value>\n"`, where `<len>` counts itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(super::pax_record("comment", "x"), b"13 comment=x\n");
        for n in [0, 85, 86, 87, 95, 990, 991, 995] {
            let rec = super::pax_record("comment", &"y".repeat(n));
            let len: usize = std::str::from_utf8(&rec)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, rec.len(), "value of {n} bytes");
        }
    }
}
