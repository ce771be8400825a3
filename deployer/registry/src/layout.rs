//! How an artifact is laid out in a registry: one OCI image manifest whose config is silver's
//! manifest, whose layers are the manifest again in content-defined parts, then the files in
//! content-defined packs, and whose annotation names the BLAKE3 id.
//!
//! Both splits are content-defined so that a one-file change moves about one part and one pack:
//! a boundary falls after a line (or a file) whose own hash says so, so an edit shifts no
//! boundary but its own. The config holds the whole manifest for other tools (`skopeo inspect
//! --config`); a node reads the parts instead, fetching only those it has not seen, since a
//! 6,551-file manifest is 280 KB that a one-file change would otherwise move whole.

use std::collections::BTreeMap;
use std::ops::Range;

use packer::{Hash, Manifest};
use serde::{Deserialize, Serialize};

use crate::reference::Digest;

pub const ARTIFACT_TYPE: &str = "application/vnd.silver.artifact.v1";
/// The config blob: silver's manifest, zstd-compressed (6,551 entries: 280 KB, not 790).
pub const CONFIG_TYPE: &str = "application/vnd.silver.manifest.v1+zstd";
/// A run of the manifest's lines, zstd-compressed.
pub const PART_TYPE: &str = "application/vnd.silver.manifest.part.v1+zstd";
/// A run of distinct files, as object frames (hash, length, content), zstd-compressed.
pub const PACK_TYPE: &str = "application/vnd.silver.pack.v1+zstd";
/// The annotation holding the artifact's BLAKE3 id.
pub const ID_ANNOTATION: &str = "dev.silver.artifact.id";
/// The annotation naming the rule that split the files into packs. A node derives which
/// files each pack holds from the manifest with the same rule, so no pack needs an
/// annotation of its own: every byte of a layer descriptor is read by every pull.
pub const PACKING_ANNOTATION: &str = "dev.silver.packing";
/// The one packing rule there is: [`pack_groups`].
pub const PACKING: &str = "v1";

/// A file this big or bigger is a pack of its own: a change to it moves only it.
pub const BIG_FILE: u64 = 1 << 20;
/// A pack closes once it holds this much, whatever the boundary rule says.
pub const MAX_PACK: u64 = 4 << 20;
/// Packs hold about this many bytes of files: a file ends a pack with a probability of its
/// size over this. Smaller packs mean a smaller pull of a changed file but more layers, whose
/// descriptors (about 130 bytes each) every pull reads; on the 6,551-file benchmark tree the
/// sum is lowest near 128 KiB (BENCHMARKS.md, "Artifacts through a registry").
const PACK_TARGET: u64 = 128 << 10;
/// On average one line in this many ends a manifest part.
const PART_SPREAD: u16 = 128;
/// zstd levels: parts are small and read by every node; packs are bulk.
const PART_LEVEL: i32 = 19;
pub const PACK_LEVEL: i32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// silver's image manifest for an artifact with these blobs. Serialized, it is the same
    /// bytes for the same artifact on every machine (field order fixed, maps sorted).
    pub fn new(manifest: &Manifest, config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(crate::http::OCI_MANIFEST.into()),
            artifact_type: Some(ARTIFACT_TYPE.into()),
            config,
            layers,
            annotations: BTreeMap::from([
                (ID_ANNOTATION.to_string(), manifest.id.to_string()),
                (PACKING_ANNOTATION.to_string(), PACKING.to_string()),
            ]),
        }
    }
}

/// Splits distinct files into packs: a big file alone; otherwise a pack ends after a file
/// whose hash says so (with a probability of its size over [`PACK_TARGET`]) or once it holds
/// [`MAX_PACK`] bytes. Content-defined: a changed file moves only its own pack's boundary.
pub fn pack_groups(objects: &[(Hash, u64)]) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, (hash, size)) in objects.iter().enumerate() {
        if *size >= BIG_FILE {
            if start < i {
                groups.push(start..i);
            }
            groups.push(i..i + 1);
            (start, bytes) = (i + 1, 0);
            continue;
        }
        bytes += size;
        if bytes >= MAX_PACK || ends_pack(&hash.0, *size) {
            groups.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < objects.len() {
        groups.push(start..objects.len());
    }
    groups
}

/// Splits the manifest's bytes into parts at line ends chosen by each line's own hash; the
/// first line (the format header) always ends a part.
pub fn manifest_parts(bytes: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut line_start = 0;
    let mut first = true;
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'\n' {
            continue;
        }
        let line = &bytes[line_start..=i];
        line_start = i + 1;
        if first || ends_run(blake3::hash(line).as_bytes(), PART_SPREAD) {
            parts.push(&bytes[start..=i]);
            start = i + 1;
        }
        first = false;
    }
    if start < bytes.len() {
        parts.push(&bytes[start..]);
    }
    parts
}

/// A manifest part as a blob.
pub fn compress_part(part: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(part, PART_LEVEL).expect("compressing into memory cannot fail")
}

fn ends_pack(hash: &[u8; 32], size: u64) -> bool {
    let draw = u32::from_le_bytes([hash[0], hash[1], hash[2], hash[3]]) as u128;
    draw * (PACK_TARGET as u128) < (size as u128) << 32
}

fn ends_run(hash: &[u8; 32], spread: u16) -> bool {
    u16::from_le_bytes([hash[30], hash[31]]).checked_rem(spread) == Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn objects(n: usize, salt: u8) -> Vec<(Hash, u64)> {
        (0..n)
            .map(|i| {
                (
                    Hash::of(&[(i % 251) as u8, (i / 251) as u8, salt]),
                    1000 + i as u64,
                )
            })
            .collect()
    }

    #[test]
    fn a_one_file_change_moves_about_one_pack() {
        let before = objects(6551, 0);
        let mut after = before.clone();
        after[3000] = (Hash::of(b"changed"), 1234);
        let (a, b) = (pack_groups(&before), pack_groups(&after));
        let key = |objs: &[(Hash, u64)], g: &Range<usize>| objs[g.clone()].to_vec();
        let old: std::collections::HashSet<_> = a.iter().map(|g| key(&before, g)).collect();
        let changed = b.iter().filter(|g| !old.contains(&key(&after, g))).count();
        assert!((1..=2).contains(&changed), "{changed} packs changed");
        assert!(
            (100..400).contains(&a.len()),
            "{} packs for 6,551 files",
            a.len()
        );
    }

    #[test]
    fn big_files_go_alone() {
        let mut objs = objects(10, 1);
        objs[4].1 = BIG_FILE;
        let groups = pack_groups(&objs);
        assert!(groups.contains(&(4..5)), "{groups:?}");
    }

    proptest! {
        #[test]
        fn packs_cover_every_file_once_in_order(n in 0usize..3000, salt: u8) {
            let groups = pack_groups(&objects(n, salt));
            let mut next = 0;
            for g in &groups {
                prop_assert!(g.start == next && g.end > g.start);
                next = g.end;
            }
            prop_assert_eq!(next, n);
        }

        #[test]
        fn parts_join_back_to_the_manifest(lines in proptest::collection::vec("[a-z/._]{1,40}", 0..600)) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let parts = manifest_parts(text.as_bytes());
            prop_assert_eq!(parts.concat(), text.as_bytes().to_vec());
            prop_assert!(parts.iter().all(|p| p.ends_with(b"\n")));
        }
    }
}
