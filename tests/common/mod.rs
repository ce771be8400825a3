//! Helpers shared by the end-to-end tests: the real binary, fixture copies, output redaction.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// The real `silver` binary, with colors off and no inherited reproducibility knobs.
pub fn silver() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("silver").unwrap();
    cmd.env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("SILVER_LOG");
    cmd
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Copies a fixture app into `dest` (which must not exist).
pub fn copy_fixture(name: &str, dest: &Path) {
    copy_dir(&fixtures().join(name), dest);
}

pub fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let to = dest.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// stderr (or stdout) with temp paths, ids and digests replaced by stable placeholders.
pub fn redact(text: &str, tmp: &Path) -> String {
    let mut out = text.replace(tmp.to_str().unwrap(), "[TMP]");
    let patterns = [
        (r"b3:[0-9a-f]{64}", "[ID]"),
        (r"-[0-9a-f]{12}\.silver", "-[ID12].silver"),
        (r"\b[0-9a-f]{64}\b", "[SHA256]"),
    ];
    for (pattern, replacement) in patterns {
        out = regex_lite::Regex::new(pattern)
            .unwrap()
            .replace_all(&out, replacement)
            .into_owned();
    }
    out
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Packs `app` into `out` with the real binary; returns the id and the archive's path.
pub fn pack_dir(app: &Path, out: &Path) -> (String, PathBuf) {
    let output = silver()
        .arg("pack")
        .arg(app)
        .arg("-o")
        .arg(out)
        .arg("--json")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    (
        report["id"].as_str().unwrap().to_string(),
        PathBuf::from(report["archive"].as_str().unwrap()),
    )
}
