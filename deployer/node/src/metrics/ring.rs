//! A fixed-size ring of samples on disk, in the style of rrdtool: a header, then `slots`
//! records of a timestamp and `fields` numbers. The slot for time `t` is `t / step % slots`,
//! so a ring never grows, a restart finds its history, and a slot left from an earlier lap is
//! told apart by its timestamp.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"SILVRING";
const VERSION: u32 = 1;
const HEADER: u64 = 32;

/// One ring file, open for reading and writing.
pub struct Ring {
    file: File,
    fields: usize,
    slots: u64,
    step: u64,
}

/// Samples in time order: each time (unix seconds) with its numbers (NaN: no value).
pub type Series = Vec<(u64, Vec<f32>)>;

impl Ring {
    /// Opens `path`, or makes it (0600) when missing or when its shape is not this one: a
    /// ring written for other fields cannot be read as these.
    pub fn open(path: &Path, fields: usize, slots: u64, step: u64) -> io::Result<Ring> {
        let ring = |file| Ring {
            file,
            fields,
            slots,
            step,
        };
        if let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            let mut head = [0u8; HEADER as usize];
            let size = (HEADER + slots * record_len(fields)) as usize;
            let fits = file.read_exact_at(&mut head, 0).is_ok()
                && head == header(fields, slots, step)
                && file.metadata()?.len() as usize == size;
            if fits {
                return Ok(ring(file));
            }
            tracing::warn!(path = %path.display(), "metrics ring of another shape; starting it afresh");
        }
        // Made whole beside it, then renamed over it: a crash leaves the old ring or the new.
        let dir = path.parent().unwrap_or(Path::new("."));
        let new = safefs::temp_file_in(dir, 0o600)?;
        new.as_file().set_len(HEADER + slots * record_len(fields))?;
        new.as_file()
            .write_all_at(&header(fields, slots, step), 0)?;
        let file = new.persist(path).map_err(|e| e.error)?;
        Ok(ring(file))
    }

    /// Writes the sample for time `t` into its slot.
    pub fn write(&self, t: u64, values: &[f32]) -> io::Result<()> {
        debug_assert_eq!(values.len(), self.fields);
        let t = t - t % self.step;
        let mut record = Vec::with_capacity(record_len(self.fields) as usize);
        record.extend_from_slice(&t.to_le_bytes());
        for v in values.iter().take(self.fields) {
            record.extend_from_slice(&v.to_le_bytes());
        }
        record.resize(record_len(self.fields) as usize, 0);
        self.file.write_all_at(&record, self.offset(t))
    }

    /// The samples from `since` to `until` (unix seconds), oldest first.
    pub fn read(&self, since: u64, until: u64) -> io::Result<Series> {
        let len = record_len(self.fields) as usize;
        let mut all = vec![0u8; self.slots as usize * len];
        self.file.read_exact_at(&mut all, HEADER)?;
        let mut out: Series = all
            .chunks_exact(len)
            .filter_map(|r| {
                let t = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
                (t != 0 && t >= since && t <= until).then(|| {
                    let values = r[8..]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                        .collect();
                    (t, values)
                })
            })
            .collect();
        out.sort_by_key(|(t, _)| *t);
        Ok(out)
    }

    fn offset(&self, t: u64) -> u64 {
        HEADER + (t / self.step % self.slots) * record_len(self.fields)
    }
}

fn record_len(fields: usize) -> u64 {
    8 + 4 * fields as u64
}

fn header(fields: usize, slots: u64, step: u64) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(fields as u32).to_le_bytes());
    h[16..24].copy_from_slice(&slots.to_le_bytes());
    h[24..32].copy_from_slice(&step.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_in_place_survives_reopening_and_never_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.ring");
        let ring = Ring::open(&path, 2, 4, 10).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        for i in 0..10u64 {
            ring.write(1000 + i * 10, &[i as f32, f32::NAN]).unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        let ring = Ring::open(&path, 2, 4, 10).unwrap();
        let got = ring.read(0, u64::MAX).unwrap();
        let times: Vec<u64> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [1060, 1070, 1080, 1090], "the last lap only");
        assert_eq!(got[3].1[0], 9.0);
        assert!(got[3].1[1].is_nan());
        assert_eq!(ring.read(1075, 1085).unwrap().len(), 1);
        // Another shape starts afresh rather than misreading.
        let other = Ring::open(&path, 3, 4, 10).unwrap();
        assert!(other.read(0, u64::MAX).unwrap().is_empty());
    }
}
