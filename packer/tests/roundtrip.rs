//! Property tests of the format: pack, unpack and pack again gives the same id; the order in which
//! a tree was created, its mtimes, its location and the thread count never change the bytes.

#![allow(clippy::result_large_err)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use packer::{NoProgress, PackConfig, ReadConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Node {
    File { content: Vec<u8>, exec: bool },
    Link(String),
    Dir,
}

fn tree() -> impl Strategy<Value = Vec<(String, Node)>> {
    let name = "[a-z]{1,3}( [a-z])?|[A-Z0-9_.-]{1,4}|é[a-z]";
    let name = name.prop_filter("`.` and `..` are not names", |n: &String| {
        n.chars().any(|c| c != '.')
    });
    let path = prop::collection::vec(name, 1..4).prop_map(|parts| parts.join("/"));
    let node = prop_oneof![
        4 => (prop::collection::vec(any::<u8>(), 0..300), any::<bool>()).prop_map(|(content, exec)| Node::File { content, exec }),
        1 => "[a-z]{1,3}".prop_map(Node::Link),
        1 => Just(Node::Dir),
    ];
    prop::collection::btree_map(path, node, 1..12).prop_map(|m| {
        // Drop entries that would sit under a file or link of the same tree.
        let mut out: Vec<(String, Node)> = Vec::new();
        for (p, n) in m {
            let blocked = out
                .iter()
                .any(|(q, qn)| !matches!(qn, Node::Dir) && p.starts_with(&format!("{q}/")));
            let blocks = out.iter().any(|(q, _)| q.starts_with(&format!("{p}/")));
            if !blocked && (!blocks || matches!(n, Node::Dir)) {
                out.push((p, n));
            }
        }
        // Links may point at files, directories or nothing, but not at links: that rules out
        // loops (`ic -> ic`), which pack rightly refuses.
        let links: Vec<String> = out
            .iter()
            .filter(|(_, n)| matches!(n, Node::Link(_)))
            .map(|(p, _)| p.clone())
            .collect();
        out.retain(|(p, n)| match n {
            Node::Link(target) => {
                let resolved = match p.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{target}"),
                    None => target.clone(),
                };
                !links.contains(&resolved)
            }
            _ => true,
        });
        out
    })
}

fn create(root: &Path, nodes: &[(String, Node)], order: &[usize], mtime_seed: u64) {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("app.ini"), "[production]\napp_name = prop\n").unwrap();
    for &i in order {
        let (path, node) = &nodes[i];
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        match node {
            Node::File { content, exec } => {
                std::fs::write(&full, content).unwrap();
                let mode = if *exec { 0o700 } else { 0o600 } | (mtime_seed as u32 & 0o044);
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime_seed * 1000);
                std::fs::File::options()
                    .write(true)
                    .open(&full)
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
            }
            Node::Link(target) => std::os::unix::fs::symlink(target, &full).unwrap(),
            Node::Dir => std::fs::create_dir_all(&full).unwrap(),
        }
    }
}

fn pack(app: &Path, out: &Path, threads: u32) -> (String, Vec<u8>) {
    let config = PackConfig {
        threads,
        readers: threads as usize,
        ..PackConfig::default()
    };
    pack_with(app, out, &config).unwrap()
}

fn pack_with(
    app: &Path,
    out: &Path,
    config: &PackConfig,
) -> Result<(String, Vec<u8>), packer::Error> {
    let report = packer::pack(app, out, config, &NoProgress)?;
    Ok((report.id, std::fs::read(report.archive).unwrap()))
}

/// An app directory under `root` with an `app.ini` and 600 files, file `i` made by `content(i)`
/// and put where `place(i)` says.
fn many_files(
    root: &Path,
    place: impl Fn(u32) -> String,
    content: impl Fn(u32) -> Vec<u8>,
) -> std::path::PathBuf {
    let app = root.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("app.ini"), "[production]\napp_name = many\n").unwrap();
    for i in 0..600u32 {
        let path = app.join(place(i));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content(i)).unwrap();
    }
    app
}

/// Many files of mixed sizes, so that readers take many batches, split them into parts and
/// finish out of order: any number of readers gives the same archive.
#[test]
fn the_number_of_readers_does_not_matter() {
    let tmp = tempfile::tempdir().unwrap();
    let app = many_files(
        tmp.path(),
        |i| format!("pkg{}/sub{}/f{i}.py", i % 7, i % 3),
        |i| {
            // Mostly small files, some of a few hundred KiB, a few past the whole-file limit.
            let size = match i % 50 {
                0 => (1 << 20) + 4096 + i as usize,
                1..=5 => 300_000 + i as usize,
                _ => (i as usize * 37) % 5000,
            };
            (0..size).map(|b| (b as u32 * 31 + i) as u8).collect()
        },
    );
    let one = pack(&app, &tmp.path().join("one"), 1);
    for readers in [2, 3, 4] {
        let config = PackConfig {
            readers,
            ..PackConfig::default()
        };
        let other = pack_with(&app, &tmp.path().join(format!("r{readers}")), &config).unwrap();
        assert_eq!(other.0, one.0);
        assert!(other.1 == one.1, "{readers} readers: archives differ");
    }
}

/// A reader's error (here: a file that still names the source path, with `strict`) in the
/// middle of a tree stops every thread and leaves nothing behind.
#[test]
fn a_reader_error_stops_the_pack_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("app");
    let app = many_files(
        tmp.path(),
        |i| format!("m{i:03}.txt"),
        |i| match i {
            300 => format!("built in {}\n", source.display()).into_bytes(),
            _ => format!("x = {i}\n").repeat(i as usize % 200).into_bytes(),
        },
    );
    let out = tmp.path().join("out");
    let config = PackConfig {
        readers: 3,
        strict: true,
        ..PackConfig::default()
    };
    let err = pack_with(&app, &out, &config).unwrap_err();
    assert!(err.to_string().contains("m300.txt"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn pack_unpack_pack_gives_the_same_id(nodes in tree()) {
        let tmp = tempfile::tempdir().unwrap();
        let order: Vec<usize> = (0..nodes.len()).collect();
        create(&tmp.path().join("a/app"), &nodes, &order, 1);
        let (id, bytes) = pack(&tmp.path().join("a/app"), &tmp.path().join("out1"), 2);
        let archive = tmp.path().join("x.silver");
        std::fs::write(&archive, &bytes).unwrap();
        packer::unpack(&archive, &tmp.path().join("un/app"), &ReadConfig::default()).unwrap();
        let (id2, bytes2) = pack(&tmp.path().join("un/app"), &tmp.path().join("out2"), 1);
        prop_assert_eq!(id, id2);
        prop_assert_eq!(bytes, bytes2);
    }

    #[test]
    fn creation_order_mtimes_location_and_threads_do_not_matter(nodes in tree(), seed in any::<u64>()) {
        let tmp = tempfile::tempdir().unwrap();
        let forward: Vec<usize> = (0..nodes.len()).collect();
        let mut shuffled = forward.clone();
        // A seeded permutation: reverse, then rotate.
        shuffled.reverse();
        let len = shuffled.len();
        shuffled.rotate_left((seed as usize) % len);
        create(&tmp.path().join("one/app"), &nodes, &forward, 3);
        create(&tmp.path().join("two/deeper/other-name"), &nodes, &shuffled, seed % 1_000_000);
        std::fs::rename(tmp.path().join("two/deeper/other-name"), tmp.path().join("two/deeper/app")).unwrap();
        let (id1, bytes1) = pack(&tmp.path().join("one/app"), &tmp.path().join("o1"), 1);
        let (id2, bytes2) = pack(&tmp.path().join("two/deeper/app"), &tmp.path().join("o2"), 4);
        prop_assert_eq!(id1, id2);
        prop_assert!(bytes1 == bytes2, "archives differ");
    }
}
