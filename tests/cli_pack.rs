//! End-to-end: `silver pack`, `inspect`, `verify` and `unpack` run as a user would run them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{
    copy_fixture, pack_dir, pack_report, redact, silver, stderr, stdout, unpacked, verified,
};

#[test]
fn pack_prints_the_id_and_writes_the_named_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("hello-wsgi");
    copy_fixture("hello-wsgi", &app);
    std::fs::write(app.join("local-notes.txt"), "ignored by .silverignore").unwrap();
    let out = silver()
        .args(["pack"])
        .arg(&app)
        .arg("-o")
        .arg(tmp.path().join("dist"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(id.starts_with("b3:") && id.len() == 67, "{id}");
    let archive = tmp
        .path()
        .join("dist")
        .join(format!("hello-{}.silver", &id[3..15]));
    assert!(archive.is_file());
    insta::assert_snapshot!(redact(&stderr(&out), tmp.path()), @"      Packed hello [ID] (5 files, 1.59 KiB -> 1.40 KiB, 0 fixups) into [TMP]/dist/hello-[ID12].silver");
}

#[test]
fn packing_again_into_the_same_directory_replaces_the_archive_and_leaves_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("hello-wsgi");
    copy_fixture("hello-wsgi", &app);
    let dist = tmp.path().join("dist");
    let (_, first) = pack_dir(&app, &dist);
    let bytes = std::fs::read(&first).unwrap();
    // Damaged in place: the next pack must put the real archive back, not keep this one.
    std::fs::write(&first, b"not an archive").unwrap();
    let (_, second) = pack_dir(&app, &dist);
    assert_eq!(first, second);
    assert!(
        std::fs::read(&second).unwrap() == bytes,
        "archive not replaced"
    );
    let names: Vec<_> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [first.file_name().unwrap()]);

    // A directory where the archive goes is an error, and is left alone.
    std::fs::remove_file(&first).unwrap();
    std::fs::create_dir(&first).unwrap();
    let out = silver()
        .arg("pack")
        .arg(&app)
        .arg("-o")
        .arg(&dist)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Is a directory"), "{}", stderr(&out));
    assert!(first.is_dir());
    assert_eq!(std::fs::read_dir(&dist).unwrap().count(), 1);
}

#[test]
fn pack_json_reports_everything_ci_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    std::os::unix::fs::symlink("/usr/bin/python3", app.join("python")).unwrap();
    let report = pack_report(&app, tmp.path(), &[]);
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "app",
            "archive",
            "archive_bytes",
            "archive_sha256",
            "content_bytes",
            "entries",
            "files",
            "fixups",
            "id",
            "warnings"
        ]
    );
    assert_eq!(report["app"], "hello");
    assert_eq!(report["files"], 5);
    assert_eq!(report["fixups"][0]["kind"], "system-link");
    let archive = Path::new(report["archive"].as_str().unwrap());
    assert_eq!(
        report["archive_bytes"],
        std::fs::metadata(archive).unwrap().len()
    );
    // The join hashes the archive while it writes it: the figure must be the file's own.
    let sha256 = <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(archive).unwrap());
    assert_eq!(report["archive_sha256"], hex::encode(sha256));
}

#[test]
fn two_copies_made_at_different_times_and_places_pack_to_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one/hello-wsgi");
    let two = tmp.path().join("elsewhere/deeper/checkout");
    copy_fixture("hello-wsgi", &one);
    copy_fixture("hello-wsgi", &two);
    common::set_mtimes(&one, 1_000_000_000);
    common::set_mtimes(&two, 1_700_000_000);
    // Different modes (group/other bits), an extra ignored file and a different umask.
    std::fs::set_permissions(two.join("app.py"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(two.join(".git")).unwrap();
    std::fs::write(two.join(".git/HEAD"), "ref: refs/heads/main").unwrap();
    std::fs::create_dir(two.join("__pycache__")).unwrap();
    std::fs::write(two.join("__pycache__/app.cpython-311.pyc"), "bytecode").unwrap();
    let pack =
        |app: &Path, out: &str| std::fs::read(pack_dir(app, &tmp.path().join(out)).1).unwrap();
    assert!(pack(&one, "o1") == pack(&two, "o2"), "archives differ");
}

#[test]
fn inspect_shows_header_app_id_entries_and_fixups() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    std::fs::create_dir(app.join("uploads")).unwrap();
    std::os::unix::fs::symlink(app.join("static"), app.join("assets")).unwrap();
    let (_, archive) = pack_dir(&app, tmp.path());
    let out = silver().arg("inspect").arg(&archive).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(redact(&stdout(&out), tmp.path()), @r"
    format    silver-manifest 1
    app       hello
    id        [ID]
    archive   1591 bytes, sha256 [SHA256]
    content   1628 bytes in 5 files
    entries   7 (1 symlinks, 1 empty directories)
    fixups    1
      link-relativized   assets

    file  0644         16  .silverignore
    file  0644        183  app.ini
    file  0644       1260  app.py
    link  0777          -  assets -> static
    file  0644        135  lib/python/greeting/__init__.py
    file  0644         34  static/css/site.css
    dir   0755          -  uploads/
    ");
}

#[test]
fn verify_checks_the_id() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    let (id, archive) = pack_dir(&app, tmp.path());
    verified(&archive, &id);
    silver()
        .arg("verify")
        .arg(&archive)
        .arg("--id")
        .arg(&id[3..15])
        .assert()
        .success();
    let wrong = format!("b3:{}", "0".repeat(64));
    let out = silver()
        .arg("verify")
        .arg(&archive)
        .arg("--id")
        .arg(&wrong)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    insta::assert_snapshot!(redact(&stderr(&out), tmp.path()), @r"
    error: `[TMP]/hello-[ID12].silver` did not verify
      caused by: artifact `[TMP]/hello-[ID12].silver` is [ID], not [ID]
    hint: the archive is not the artifact you named; check the id you were given
    ");
    // One flipped byte anywhere makes it fail.
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&archive, bytes).unwrap();
    assert_eq!(
        silver()
            .arg("verify")
            .arg(&archive)
            .output()
            .unwrap()
            .status
            .code(),
        Some(3)
    );
}

#[test]
fn unpack_round_trips_and_never_writes_into_an_existing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    let (_, archive) = pack_dir(&app, tmp.path());
    let dest = tmp.path().join("releases/one");
    unpacked(archive.as_ref(), &dest);
    assert_eq!(
        std::fs::read(dest.join("app.py")).unwrap(),
        std::fs::read(app.join("app.py")).unwrap()
    );
    let out = silver()
        .arg("unpack")
        .arg(&archive)
        .arg(&dest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(redact(&stderr(&out), tmp.path()), @r"
    error: failed to unpack `[TMP]/hello-[ID12].silver`
      caused by: `[TMP]/releases/one` already exists
    hint: choose a new destination; unpack never writes into an existing directory
    ");
}

#[test]
fn the_hostile_corpus_is_refused_by_the_cli() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("packer/tests/hostile");
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(corpus).unwrap().flatten() {
        n += 1;
        let dest = tmp.path().join(format!("dest{n}"));
        let out = silver()
            .arg("unpack")
            .arg(entry.path())
            .arg(&dest)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}: {}",
            entry.path().display(),
            stderr(&out)
        );
        assert!(stderr(&out).contains("hint: do not deploy this artifact"));
    }
    assert!(n >= 20);
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "something was written"
    );
}

/// Sets up a broken app in `app` and checks the error pack gives, with no archive written.
fn check(setup: impl FnOnce(&Path), expected_stderr: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    setup(&app);
    let out_dir = tmp.path().join("dist");
    let out = silver()
        .arg("pack")
        .arg(&app)
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        redact(&stderr(&out), tmp.path()).trim_end(),
        expected_stderr.trim_end()
    );
    let written = std::fs::read_dir(&out_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "a refused pack wrote into the output directory");
}

#[test]
fn bad_input_gets_a_clear_error_naming_the_thing() {
    check(|app| std::fs::write(app.join("app.ini"), "[production]\nrunner = app.py\nhealth_timeout = soon\n").unwrap(), "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:3: health_timeout `soon` must be a whole number of seconds from 1 to 3600
hint: fix that line of `app.ini`; the keys are listed in the README");
    check(
        |app| std::fs::remove_file(app.join("app.ini")).unwrap(),
        "\
error: failed to pack `[TMP]/app`
  caused by: `[TMP]/app/app.ini` is missing: every app has an `app.ini` at its root
hint: create `app.ini` with a `[production]` section, e.g. `app_name = myapp`",
    );
    check(
        |app| {
            std::fs::write(
                app.join("app.ini"),
                "[production]\napp_name = ok\nno equals sign here\n",
            )
            .unwrap()
        },
        "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:3: `no equals sign here` is not `key = value`
hint: fix that line of `app.ini`; the keys are listed in the README",
    );
    check(|app| std::fs::write(app.join("app.ini"), "[production]\napp_name = ok\nservice.mongodb =\n").unwrap(), "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:3: service `mongodb` is not one silver offers
hint: MongoDB is not offered (Debian does not ship it, and Silver Lining's own did not work); the services are files, writable_root, postgresql, postgis, mysql, couchdb, redis");
    check(|app| std::fs::write(app.join("app.ini"), "[production]\napp_name = ok\nconfig.secret = hunter2\n").unwrap(), "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:3: `config.secret` is not a setting silver knows
hint: the settings are config.required, config.default, config.checker, config.template; a secret belongs on the node, never in the artifact: `silver config set APP NAME=-` reads it from stdin");
    check(|app| std::fs::write(app.join("app.ini"), "[production]\napp_name = my app\n").unwrap(), "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:2: app_name `my app` is invalid: only lowercase letters, digits, `-`, `_` and `.` are allowed
hint: fix that line of `app.ini`; the keys are listed in the README");
    check(|app| std::os::unix::fs::symlink("../../../etc/passwd", app.join("static/passwd")).unwrap(), "\
error: failed to pack `[TMP]/app`
  caused by: cannot pack symlink `static/passwd` -> `../../../etc/passwd`: it leaves the app (relative targets must resolve inside it)
hint: make the symlink point inside the app, or to an allowed system prefix (see `--system-prefix`), or pack the file it names in its place with `--dereference`, or add it to `.silverignore`");
    check(|app| std::os::unix::fs::symlink("/etc/shadow", app.join("shadow")).unwrap(), "\
error: failed to pack `[TMP]/app`
  caused by: cannot pack symlink `shadow` -> `/etc/shadow`: it is absolute and outside the allowed system prefixes
hint: make the symlink point inside the app, or to an allowed system prefix (see `--system-prefix`), or pack the file it names in its place with `--dereference`, or add it to `.silverignore`");
    check(|app| { std::process::Command::new("mkfifo").arg(app.join("pipe")).status().unwrap(); }, "\
error: failed to pack `[TMP]/app`
  caused by: cannot pack `pipe`: it is a FIFO (named pipe); an artifact holds only files, directories and symlinks
hint: rename or remove it, or add it to `.silverignore`");
    check(|app| { std::os::unix::net::UnixListener::bind(app.join("sock")).unwrap(); }, "\
error: failed to pack `[TMP]/app`
  caused by: cannot pack `sock`: it is a socket; an artifact holds only files, directories and symlinks
hint: rename or remove it, or add it to `.silverignore`");
    check(
        |app| std::fs::write(app.join("bad\nname"), "x").unwrap(),
        "\
error: failed to pack `[TMP]/app`
  caused by: cannot pack `bad\nname`: the name contains the control character U+000A
hint: rename or remove it, or add it to `.silverignore`",
    );
    check(
        |app| {
            use std::os::unix::ffi::OsStrExt;
            std::fs::write(
                app.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")),
                "latin-1 name",
            )
            .unwrap();
        },
        "\
error: failed to pack `[TMP]/app`
  caused by: cannot pack `caf\u{FFFD}.txt`: the name is not valid UTF-8
hint: rename or remove it, or add it to `.silverignore`",
    );
}

#[test]
fn ignored_special_files_do_not_stop_a_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    std::process::Command::new("mkfifo")
        .arg(app.join("pipe"))
        .status()
        .unwrap();
    std::fs::write(app.join(".silverignore"), "pipe\n").unwrap();
    std::fs::write(app.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(app.join("debug.log"), "noise").unwrap();
    let report = pack_report(&app, tmp.path(), &[]);
    let files = report["files"].clone();
    assert_eq!(files, 6, "app files plus .gitignore; no pipe, no debug.log");
    let report = pack_report(&app, tmp.path(), &["--no-gitignore"]);
    assert_eq!(report["files"], 7, "--no-gitignore packs debug.log");
}

#[test]
fn unreadable_files_are_refused() {
    // Root reads everything, so run the pack as `nobody` when the tests run as root.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    std::process::Command::new("chmod")
        .arg("-R")
        .arg("a+rwX")
        .arg(&app)
        .status()
        .unwrap();
    std::fs::set_permissions(app.join("app.py"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("silver");
    let is_root = unsafe_free_is_root();
    let mut cmd = if is_root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    let out = cmd
        .env("NO_COLOR", "1")
        .arg("pack")
        .arg(&app)
        .arg("-o")
        .arg(tmp.path().join("dist"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read `app.py`"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("hint: make it readable (chmod), or add it to `.silverignore`"));
}

fn unsafe_free_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

#[test]
fn a_tree_over_the_size_limit_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    let out = silver()
        .arg("pack")
        .arg(&app)
        .arg("-o")
        .arg(tmp.path().join("dist"))
        .args(["--max-total-bytes", "1000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("1628 bytes of content, over the limit of 1000"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("dist"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

#[test]
fn large_and_executable_files_round_trip() {
    // Files over 1 MiB take pack's streaming path rather than the loaded one.
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    let mut x = 7u64;
    let big: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect();
    std::fs::write(app.join("static/video.bin"), &big).unwrap();
    std::fs::write(app.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(app.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let (id, archive) = pack_dir(&app, tmp.path());
    verified(&archive, &id);
    let dest = tmp.path().join("out");
    unpacked(archive.as_ref(), &dest);
    assert!(std::fs::read(dest.join("static/video.bin")).unwrap() == big);
    let mode = std::fs::metadata(dest.join("run.sh"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o755, "executables are normalized to 0755");
    assert_eq!(
        std::fs::metadata(dest.join("app.py"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
}

/// What `app.ini` says about the runner and location is checked at pack time, naming the line,
/// so it never surfaces later as a gunicorn traceback on the node.
#[test]
fn runner_and_location_mistakes_are_refused_at_pack_time() {
    let ini =
        |text: &'static str| move |app: &Path| std::fs::write(app.join("app.ini"), text).unwrap();
    check(
        ini("[production]\nrunner = missing.py\n"),
        "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:2: runner `missing.py` does not exist in the app
hint: fix that line of `app.ini`; the keys are listed in the README",
    );
    check(|app| { std::fs::write(app.join("app.rb"), "").unwrap(); ini("[production]\nrunner = app.rb\n")(app) }, "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:2: runner `app.rb` is not a Python file: a runner is a WSGI `.py` file exposing `application` (other programs go in [processes])
hint: fix that line of `app.ini`; the keys are listed in the README");
    check(
        ini("[production]\nrunner = static\n"),
        "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:2: runner `static` is not a file
hint: fix that line of `app.ini`; the keys are listed in the README",
    );
    let php = |text: &'static str| {
        move |app: &Path| {
            std::fs::create_dir_all(app.join("site")).unwrap();
            std::fs::write(app.join("site/runner.php"), "<?php echo 1;").unwrap();
            std::fs::write(app.join("lib.php"), "<?php echo 2;").unwrap();
            std::fs::write(app.join("app.ini"), text).unwrap();
        }
    };
    check(php("[production]\nplatform = php\nphp_root = site/\n"), "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:2: platform `php` needs a `runner` (the PHP file every request goes through, such as site/runner.php inside php_root)
hint: fix that line of `app.ini`; the keys are listed in the README");
    check(php("[production]\nplatform = php\nphp_root = site/\nrunner = lib.php\n"), "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:4: runner `lib.php` is outside php_root: the runner must be a file inside php_root
hint: fix that line of `app.ini`; the keys are listed in the README");
    check(ini("[production]\nrunner = app.py\ndefault_location = http://example.com/\n"), "\
error: failed to pack `[TMP]/app`
  caused by: [TMP]/app/app.ini:3: default_location `http://example.com/` has a scheme: a location is host[/path], e.g. `example.com/blog`, without `http://`
hint: fix that line of `app.ini`; the keys are listed in the README");
}

#[test]
fn near_misses_in_app_ini_suggest_the_known_word() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    std::fs::write(
        app.join("app.ini"),
        "[production]\nrunner = app.py\nrunr = app.py\n[prodution]\n",
    )
    .unwrap();
    let out = silver()
        .arg("pack")
        .arg(&app)
        .arg("-o")
        .arg(tmp.path().join("dist"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = redact(&stderr(&out), tmp.path());
    assert!(
        said.contains(
            "app.ini:3: unknown key `runr` in [production] is ignored; did you mean `runner`?"
        ),
        "{said}"
    );
    assert!(
        said.contains(
            "app.ini:4: unknown section `[prodution]` is ignored; did you mean `[production]`?"
        ),
        "{said}"
    );
}

/// `[cron]` and the task settings are silver's own: no "unknown" warning for them.
#[test]
fn cron_and_task_settings_are_known_words() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    let ini = "[production]\nrunner = app.py\ntask_concurrency = 4\ntask_queue_size = 500\n\
               task_attempts = 3\n[cron]\nclean = @daily /clean\n";
    std::fs::write(app.join("app.ini"), ini).unwrap();
    let out = silver()
        .arg("pack")
        .arg(&app)
        .arg("-o")
        .arg(tmp.path().join("dist"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("unknown"), "{}", stderr(&out));
}

#[test]
fn a_missing_app_directory_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let out = silver()
        .arg("pack")
        .arg(tmp.path().join("does-not-exist"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(redact(&stderr(&out), tmp.path()), @r"
    error: failed to pack `[TMP]/does-not-exist`
      caused by: `[TMP]/does-not-exist` is not an app directory: it does not exist or is not a directory
    hint: give the directory that holds the app's `app.ini`
    ");
}

/// A Debian package's tree links out of itself into the packages beside it (WordPress's
/// `wp-includes/js/underscore.js` -> `../../../javascript/underscore/underscore.js`): refused by
/// default, naming the link; `--dereference` packs the file it names in its place, and still
/// refuses a link that names nothing or a directory, while a system link stays a link.
#[test]
fn links_out_of_the_app_are_refused_or_dereferenced() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("javascript");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("underscore.js"), "var _ = 1;\n").unwrap();
    let app = tmp.path().join("app");
    copy_fixture("hello-wsgi", &app);
    std::fs::create_dir_all(app.join("js")).unwrap();
    symlink(
        "../../javascript/underscore.js",
        app.join("js/underscore.js"),
    )
    .unwrap();
    symlink("/usr/bin/python3", app.join("python")).unwrap();
    let pack = |extra: &[&str]| {
        silver()
            .arg("pack")
            .arg(&app)
            .arg("-o")
            .arg(tmp.path().join("dist"))
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = pack(&[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused)
            .contains("`js/underscore.js` -> `../../javascript/underscore.js`: it leaves the app"),
        "{}",
        stderr(&refused)
    );
    assert!(
        stderr(&refused).contains("--dereference"),
        "{}",
        stderr(&refused)
    );

    let packed = pack(&["--dereference", "--json"]);
    assert!(packed.status.success(), "{}", stderr(&packed));
    let report: serde_json::Value = serde_json::from_slice(&packed.stdout).unwrap();
    let dest = tmp.path().join("out");
    unpacked(Path::new(report["archive"].as_str().unwrap()), &dest);
    let file = dest.join("js/underscore.js");
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "var _ = 1;\n");
    assert!(std::fs::symlink_metadata(dest.join("python"))
        .unwrap()
        .is_symlink());

    for (target, why) in [
        ("../../nothing-here", "it names nothing on this machine"),
        (
            "../../javascript",
            "it names a directory; --dereference packs files only",
        ),
    ] {
        std::fs::remove_file(app.join("js/underscore.js")).unwrap();
        symlink(target, app.join("js/underscore.js")).unwrap();
        let refused = pack(&["--dereference"]);
        assert_eq!(refused.status.code(), Some(1));
        let want = format!("cannot dereference symlink `js/underscore.js` -> `{target}`: {why}");
        assert!(stderr(&refused).contains(&want), "{}", stderr(&refused));
    }
}
