//! `silver bake` on bad recipes: the error names the file and the field, and nothing is built.

mod common;

use common::*;

fn check(from: &str, to: &str, expected: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let good =
        std::fs::read_to_string(fixtures().join("../image-recipes/debian-bookworm.toml")).unwrap();
    assert!(good.contains(from), "{from}");
    let recipe = tmp.path().join("bad.toml");
    std::fs::write(&recipe, good.replacen(from, to, 1)).unwrap();
    let out = silver()
        .arg("bake")
        .arg(&recipe)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = redact(&stderr(&out), tmp.path());
    assert!(err.contains(expected), "wanted {expected:?} in:\n{err}");
    assert!(
        err.contains("hint: see image-recipes/debian-bookworm.toml"),
        "{err}"
    );
    assert!(!tmp.path().join("out").exists() && !tmp.path().join("cache").exists());
}

#[test]
fn invalid_recipes_name_the_field() {
    check(
        "disk_size = \"4G\"",
        "disk_size = \"4G\"\nsize = 3",
        "[TMP]/bad.toml` is not a valid recipe: TOML parse error at line 12",
    );
    check(
        "disk_size = \"4G\"",
        "disk_size = \"4G\"\nsize = 3",
        "unknown field `size`",
    );
    check(
        "architecture = \"amd64\"",
        "architecture = \"sparc\"",
        "`image.architecture` is `sparc`; it must be `amd64` or `arm64`",
    );
    check(
        "mode = \"0644\"",
        "mode = \"rw-r--r--\"",
        "`files[0].mode` `rw-r--r--` must be an octal mode",
    );
}
