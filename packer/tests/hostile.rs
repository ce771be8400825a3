//! The hostile-archive suite: every case is an attack built by the test itself, byte by byte,
//! and each must be refused with nothing written outside the (removed) staging directory.
//! `SILVER_WRITE_HOSTILE=1 cargo test -p packer --test hostile` refreshes the kept corpus in
//! `tests/hostile/`, which `corpus_is_refused_whole` (and the CLI tests) replay as data.

use std::path::{Path, PathBuf};

use packer::{Entry, Hash, Kind, Limits, Manifest, ReadConfig};

/// One raw tar member, written without the tar crate's safety checks.
#[derive(Clone)]
struct Raw {
    name: Vec<u8>,
    typeflag: u8,
    mode: u32,
    data: Vec<u8>,
    link: Vec<u8>,
    /// Header size when it must lie about the data.
    size: Option<u64>,
}

fn raw(name: &str, typeflag: u8, mode: u32, data: &[u8]) -> Raw {
    Raw {
        name: name.as_bytes().to_vec(),
        typeflag,
        mode,
        data: data.to_vec(),
        link: vec![],
        size: None,
    }
}
fn file(name: &str, data: &[u8]) -> Raw {
    raw(name, b'0', 0o644, data)
}
fn symlink(name: &str, target: &str) -> Raw {
    Raw {
        link: target.as_bytes().to_vec(),
        ..raw(name, b'2', 0o777, b"")
    }
}

fn header_block(r: &Raw) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        let n = r.name.len().min(100);
        old.name[..n].copy_from_slice(&r.name[..n]);
        let l = r.link.len().min(100);
        old.linkname[..l].copy_from_slice(&r.link[..l]);
    }
    h.set_mode(r.mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(r.size.unwrap_or(r.data.len() as u64));
    h.set_entry_type(tar::EntryType::new(r.typeflag));
    h.set_cksum();
    *h.as_bytes()
}

fn tar_bytes(members: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        out.extend_from_slice(&header_block(m));
        out.extend_from_slice(&m.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

fn f(path: &str, content: &[u8]) -> Entry {
    Entry {
        path: path.into(),
        kind: Kind::File {
            size: content.len() as u64,
            hash: Hash::of(content),
        },
    }
}

/// A manifest's bytes, bypassing `Manifest::from_entries`' sorting when order matters to the attack.
fn manifest_text(lines: &[String]) -> Vec<u8> {
    let mut s = String::from("silver-manifest 1\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.into_bytes()
}

fn file_line(path: &str, content: &[u8]) -> String {
    format!(
        "file\t{path}\t{}\t{}",
        content.len(),
        Hash::of(content).to_hex()
    )
}

fn good(entries: Vec<Entry>) -> Vec<u8> {
    Manifest::from_entries(entries).bytes
}

fn with_manifest(manifest: Vec<u8>, members: Vec<Raw>) -> Vec<u8> {
    let mut all = vec![file(".silver-manifest", &manifest)];
    all.extend(members);
    zst(&tar_bytes(&all))
}

struct Case {
    name: &'static str,
    archive: Vec<u8>,
    /// A fragment of the error's text (with its causes) that proves the right check fired.
    expect: &'static str,
    limits: Limits,
}

fn case(name: &'static str, expect: &'static str, archive: Vec<u8>) -> Case {
    Case {
        name,
        archive,
        expect,
        limits: Limits::default(),
    }
}

/// Builds every attack. `outside` is an absolute path the attacks aim at.
fn cases(outside: &Path) -> Vec<Case> {
    let outside_s = outside.to_str().unwrap().to_string();
    let payload = b"pwned\n";
    let mut cases = vec![
        case(
            "traversal",
            "`..` component",
            with_manifest(
                manifest_text(&[file_line("../pwned", payload)]),
                vec![file("../pwned", payload)],
            ),
        ),
        case(
            "nested-traversal",
            "`..` component",
            with_manifest(
                manifest_text(&[file_line("a/../../pwned", payload)]),
                vec![file("a/../../pwned", payload)],
            ),
        ),
        case("absolute-path", "absolute", {
            let p = format!("{outside_s}/pwned");
            with_manifest(
                manifest_text(&[file_line(&p, payload)]),
                vec![file(&p, payload)],
            )
        }),
        case(
            "tar-path-differs-from-manifest",
            "not in the manifest",
            with_manifest(
                good(vec![f("ok", payload)]),
                vec![file("../pwned", payload)],
            ),
        ),
        case(
            "extra-entry",
            "no more entries",
            with_manifest(
                good(vec![f("a", payload)]),
                vec![file("a", payload), file("b", payload)],
            ),
        ),
        case(
            "missing-entry",
            "ends before",
            with_manifest(
                good(vec![f("a", payload), f("b", payload)]),
                vec![file("a", payload)],
            ),
        ),
        case(
            "duplicate-in-tar",
            "no more entries",
            with_manifest(
                good(vec![f("a", payload)]),
                vec![file("a", payload), file("a", b"evil")],
            ),
        ),
        case(
            "duplicate-in-manifest",
            "duplicate",
            with_manifest(
                manifest_text(&[file_line("a", payload), file_line("a", payload)]),
                vec![file("a", payload), file("a", payload)],
            ),
        ),
        case(
            "out-of-order-manifest",
            "out of order",
            with_manifest(
                manifest_text(&[file_line("b", payload), file_line("a", payload)]),
                vec![file("b", payload), file("a", payload)],
            ),
        ),
        case(
            "hardlink",
            "Link",
            with_manifest(
                good(vec![f("a", payload)]),
                vec![Raw {
                    link: b"/etc/passwd".to_vec(),
                    ..raw("a", b'1', 0o644, b"")
                }],
            ),
        ),
        case(
            "symlink-escapes",
            "leaves the app",
            with_manifest(
                manifest_text(&["link\tesc\t../../../etc".into()]),
                vec![symlink("esc", "../../../etc")],
            ),
        ),
        case("symlink-absolute", "outside the allowed system prefixes", {
            let t = format!("{outside_s}/secret");
            with_manifest(
                manifest_text(&[format!("link\tesc\t{t}")]),
                vec![symlink("esc", &t)],
            )
        }),
        case("write-through-symlink", "not a directory", {
            let m = manifest_text(&["link\td\tsub".into(), file_line("d/pwned", payload)]);
            with_manifest(m, vec![symlink("d", "sub"), file("d/pwned", payload)])
        }),
        case("symlink-through-symlink-escape", "leaves the app", {
            let m = manifest_text(&["link\tsub/up\t..".into(), "link\tx\tsub/up/../y".into()]);
            with_manifest(
                m,
                vec![symlink("sub/up", ".."), symlink("x", "sub/up/../y")],
            )
        }),
        case("symlink-loop", "loop", {
            let m = manifest_text(&["link\tl1\tl2/x".into(), "link\tl2\tl1/x".into()]);
            with_manifest(m, vec![symlink("l1", "l2/x"), symlink("l2", "l1/x")])
        }),
        case(
            "char-device",
            "Char",
            with_manifest(
                good(vec![f("dev", b"")]),
                vec![raw("dev", b'3', 0o644, b"")],
            ),
        ),
        case(
            "block-device",
            "Block",
            with_manifest(
                good(vec![f("dev", b"")]),
                vec![raw("dev", b'4', 0o644, b"")],
            ),
        ),
        case(
            "fifo",
            "Fifo",
            with_manifest(
                good(vec![f("fifo", b"")]),
                vec![raw("fifo", b'6', 0o644, b"")],
            ),
        ),
        case(
            "fifo-in-manifest",
            "unknown kind `fifo`",
            with_manifest(
                manifest_text(&["fifo\tp".into()]),
                vec![raw("p", b'6', 0o644, b"")],
            ),
        ),
        case(
            "setuid",
            "mode 4755",
            with_manifest(
                manifest_text(&[format!(
                    "exec\tsu\t{}\t{}",
                    payload.len(),
                    Hash::of(payload).to_hex()
                )]),
                vec![raw("su", b'0', 0o4755, payload)],
            ),
        ),
        case(
            "world-writable",
            "mode 666",
            with_manifest(
                good(vec![f("ww", payload)]),
                vec![raw("ww", b'0', 0o666, payload)],
            ),
        ),
        case(
            "size-mismatch",
            "size",
            with_manifest(
                good(vec![f("a", payload)]),
                vec![file("a", b"longer than the manifest says")],
            ),
        ),
        case(
            "hash-mismatch",
            "content hash",
            with_manifest(good(vec![f("a", payload)]), vec![file("a", b"PWNED\n")]),
        ),
        case(
            "kind-mismatch",
            "the manifest says directory",
            with_manifest(manifest_text(&["dir\td".into()]), vec![file("d", b"")]),
        ),
        case(
            "symlink-target-swapped",
            "symlink target",
            with_manifest(
                manifest_text(&["link\tl\tok".into()]),
                vec![symlink("l", "../../etc/passwd")],
            ),
        ),
        case(
            "manifest-not-first",
            "first entry must be the manifest",
            zst(&tar_bytes(&[
                file("a", payload),
                file(".silver-manifest", &good(vec![f("a", payload)])),
            ])),
        ),
        case(
            "manifest-bad-header",
            "header",
            with_manifest(b"silver-manifest 9\n".to_vec(), vec![]),
        ),
        case(
            "manifest-forged-line",
            "control character",
            with_manifest(
                manifest_text(&[file_line("a\rb", payload)]),
                vec![file("a\rb", payload)],
            ),
        ),
        case(
            "not-zstd",
            "zstd",
            tar_bytes(&[file(".silver-manifest", &good(vec![]))]),
        ),
        case("empty-file", "zstd", vec![]),
        case("truncated-stream", "", {
            let full = with_manifest(
                good(vec![f("a", &[7u8; 100_000])]),
                vec![file("a", &[7u8; 100_000])],
            );
            full[..full.len() / 2].to_vec()
        }),
        case("trailing-garbage", "", {
            let mut a = with_manifest(good(vec![f("a", payload)]), vec![file("a", payload)]);
            a.extend_from_slice(b"appended after the frame");
            a
        }),
        case("trailing-tar-data", "data follows the end", {
            let mut t = tar_bytes(&[
                file(".silver-manifest", &good(vec![f("a", payload)])),
                file("a", payload),
            ]);
            t.extend_from_slice(b"smuggled");
            zst(&t)
        }),
        case("second-zstd-frame", "data follows the end", {
            let mut a = with_manifest(good(vec![f("a", payload)]), vec![file("a", payload)]);
            a.extend_from_slice(&zst(b"second frame"));
            a
        }),
        case("skippable-frame-after", "skippable", {
            let mut a = with_manifest(good(vec![f("a", payload)]), vec![file("a", payload)]);
            // A zstd skippable frame: magic 0x184D2A50, length, then anything at all.
            a.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
            a.extend_from_slice(&8u32.to_le_bytes());
            a.extend_from_slice(b"smuggled");
            a
        }),
        case("zstd-window-too-large", "zstd", {
            let t = tar_bytes(&[file(".silver-manifest", &good(vec![]))]);
            let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
            enc.window_log(30).unwrap();
            enc.long_distance_matching(true).unwrap();
            enc.set_pledged_src_size(None).unwrap();
            let mut t2 = t.clone();
            t2.extend(std::iter::repeat_n(0u8, 1 << 20));
            std::io::Write::write_all(&mut enc, &t2).unwrap();
            enc.finish().unwrap()
        }),
        case("pax-header-bomb", "longer than its manifest allows", {
            let bomb = Raw {
                ..raw("PaxHeader/x", b'x', 0o644, &vec![b'x'; 300 << 20])
            };
            zst(&tar_bytes(&[bomb, file(".silver-manifest", &good(vec![]))]))
        }),
        case("pax-size-smuggling", "PAX size", {
            let pax = raw("PaxHeader/a", b'x', 0o644, b"12 size=999\n");
            zst(&tar_bytes(&[
                file(".silver-manifest", &good(vec![f("a", payload)])),
                pax,
                file("a", payload),
            ]))
        }),
        case("pax-path-traversal", "not in the manifest", {
            let pax = raw("PaxHeader/a", b'x', 0o644, b"17 path=../pwned\n");
            zst(&tar_bytes(&[
                file(".silver-manifest", &good(vec![f("a", payload)])),
                pax,
                file("a", payload),
            ]))
        }),
        case("gnu-longname-traversal", "`..` component", {
            let long = format!("{}/../../../../pwned", "d".repeat(120));
            let mut name = long.clone().into_bytes();
            name.push(0);
            let ll = raw("././@LongLink", b'L', 0o644, &name);
            zst(&tar_bytes(&[
                file(
                    ".silver-manifest",
                    &manifest_text(&[file_line(&long, payload)]),
                ),
                ll,
                file("x", payload),
            ]))
        }),
        case(
            "sparse-entry",
            "corrupt",
            with_manifest(
                good(vec![f("a", payload)]),
                vec![raw("a", b'S', 0o644, payload)],
            ),
        ),
        case("deep-path", "levels deep", {
            let p = vec!["d"; 80].join("/");
            with_manifest(manifest_text(&[file_line(&p, payload)]), vec![])
        }),
        case("long-path", "bytes long", {
            let p = "n".repeat(2000);
            with_manifest(manifest_text(&[file_line(&p, payload)]), vec![])
        }),
    ];
    let mut few = case(
        "too-many-entries",
        "entries, over the limit",
        with_manifest(
            good((0..20).map(|i| f(&format!("f{i:02}"), b"")).collect()),
            vec![],
        ),
    );
    few.limits.max_entries = 10;
    let mut small = case(
        "too-many-bytes",
        "bytes of content, over the limit",
        with_manifest(
            good(vec![f("big", &[1u8; 4096])]),
            vec![file("big", &[1u8; 4096])],
        ),
    );
    small.limits.max_total_bytes = 1024;
    cases.extend([few, small]);
    cases
}

/// Every path under `dir`, to prove that a refused unpack changed nothing.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walk(dir);
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect()
}

fn check(case: &Case, root: &Path) {
    let archive = root.join(format!("{}.silver", case.name));
    std::fs::write(&archive, &case.archive).unwrap();
    let outside_nodes = |list: Vec<PathBuf>| -> Vec<PathBuf> {
        list.into_iter()
            .filter(|p| !p.starts_with(root.join("nodes")))
            .collect()
    };
    let before = outside_nodes(listing(root));
    let dest = root.join("nodes/app/releases/new");
    let config = ReadConfig {
        limits: case.limits.clone(),
        ..Default::default()
    };
    let err = packer::unpack(&archive, &dest, &config).expect_err(case.name);
    let text = format!(
        "{err:#} {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        text.contains(case.expect),
        "case {}: error `{text}` lacks `{}`",
        case.name,
        case.expect
    );
    assert!(
        matches!(err, packer::Error::Refused { .. }),
        "case {}: not a refusal: {err:?}",
        case.name
    );
    assert!(!dest.exists(), "case {}: destination created", case.name);
    assert!(
        !packer::staging_path(&dest).exists(),
        "case {}: staging left behind",
        case.name
    );
    // The parent of dest may have been created; nothing else may appear anywhere in the temp root.
    let after = outside_nodes(listing(root));
    assert_eq!(
        after, before,
        "case {}: files appeared outside the staging directory",
        case.name
    );
    assert!(
        walk(&root.join("nodes")).iter().all(|p| p.is_dir()),
        "case {}: a file was left under nodes/",
        case.name
    );
    // verify must refuse the same archive, writing nothing at all.
    assert!(
        packer::verify(&archive, &config).is_err(),
        "case {}: verify accepted it",
        case.name
    );
}

#[test]
fn every_attack_is_refused_and_nothing_is_written() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let cases = cases(&outside);
    assert!(cases.len() >= 20, "the suite has {} attacks", cases.len());
    for case in &cases {
        check(case, root.path());
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "case {}: wrote outside",
            case.name
        );
    }
    if std::env::var_os("SILVER_WRITE_HOSTILE").is_some() {
        write_corpus(&cases);
    }
}

/// Cases that fail with the default limits and name no machine-specific path are kept as data.
fn portable(name: &str) -> bool {
    !matches!(
        name,
        "absolute-path"
            | "symlink-absolute"
            | "pax-header-bomb"
            | "too-many-entries"
            | "too-many-bytes"
    )
}

fn write_corpus(cases: &[Case]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    for case in cases.iter().filter(|c| portable(c.name)) {
        std::fs::write(dir.join(format!("{}.silver", case.name)), &case.archive).unwrap();
    }
}

#[test]
fn corpus_is_refused_whole() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut seen = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let archive = entry.path();
        if archive.extension().is_none_or(|e| e != "silver") {
            continue;
        }
        seen.insert(archive.file_stem().unwrap().to_string_lossy().into_owned());
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let err = packer::unpack(&archive, &dest, &ReadConfig::default());
        assert!(
            matches!(err, Err(packer::Error::Refused { .. })),
            "{}: {err:?}",
            archive.display()
        );
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            0,
            "{}: left files",
            archive.display()
        );
    }
    // Every portable attack of the suite is in the corpus, and nothing else is.
    let root = tempfile::tempdir().unwrap();
    let expected: std::collections::BTreeSet<String> = cases(root.path())
        .iter()
        .filter(|c| portable(c.name))
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(
        seen, expected,
        "SILVER_WRITE_HOSTILE=1 cargo test -p packer writes it again"
    );
}

#[test]
fn a_good_archive_still_unpacks() {
    // Guards the suite itself: the builders make valid archives when nothing is wrong.
    let root = tempfile::tempdir().unwrap();
    let archive = root.path().join("good.silver");
    let m = good(vec![
        f("a", b"hi\n"),
        Entry {
            path: "l".into(),
            kind: Kind::Link { target: "a".into() },
        },
    ]);
    std::fs::write(
        &archive,
        with_manifest(m, vec![file("a", b"hi\n"), symlink("l", "a")]),
    )
    .unwrap();
    let dest = root.path().join("dest");
    packer::unpack(&archive, &dest, &ReadConfig::default()).unwrap();
    assert_eq!(std::fs::read(dest.join("l")).unwrap(), b"hi\n");
}
