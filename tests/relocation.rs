//! End-to-end relocation: a real virtualenv (`python3 -m venv`, an editable install, console
//! scripts) and a vendored `lib/python` (`pip install --target`) pack into an artifact that holds
//! no absolute source path and still imports and runs after being unpacked somewhere else.
//! Needs python3 with venv and pip (`.ci/run` installs Debian's python3-venv); no network.

mod common;

use std::path::Path;
use std::process::Command;

use common::{silver, stderr, tree, unpacked};

/// Debian's interpreter when it can make virtualenvs, else whatever `python3` is on PATH.
fn python() -> String {
    let system = "/usr/bin/python3";
    let ok = Command::new(system)
        .args(["-c", "import ensurepip, venv"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        system.into()
    } else {
        "python3".into()
    }
}

/// The wheel Debian ships for `name` (python3-wheel-whl and friends), for installs with no index.
fn debian_wheel(name: &str) -> String {
    let dir = Path::new("/usr/share/python-wheels");
    let found = std::fs::read_dir(dir).ok().and_then(|entries| {
        entries.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}-"))
        })
    });
    let path = found.unwrap_or_else(|| {
        panic!(
            "no {name} wheel in {}\nhint: run scripts/install-deps.sh (python3-{name}-whl)",
            dir.display()
        )
    });
    path.to_string_lossy().into_owned()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn make_app(app: &Path) {
    write(
        &app.join("app.ini"),
        "[production]\napp_name = reloc\nrunner = app.py\n",
    );
    write(&app.join("app.py"), "import mypkg, vend\n\ndef application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n");
    write(&app.join("static/site.css"), "body{}\n");
    for (name, module) in [("mypkg", "mypkg"), ("vend", "vend")] {
        write(&app.join(format!("src/{name}/setup.py")), &format!(
            "from setuptools import setup\nsetup(name='{name}', version='1.0', packages=['{module}'], entry_points={{'console_scripts': ['{name}-hello={module}:main']}})\n"
        ));
        write(
            &app.join(format!("src/{name}/{module}/__init__.py")),
            &format!("def main():\n    print('hello from {name}')\n"),
        );
    }
    write(
        &app.join("src/modern/pyproject.toml"),
        "[project]\nname = \"modern\"\nversion = \"1.0\"\n[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n",
    );
    write(&app.join("src/modern/modern/__init__.py"), "VALUE = 42\n");
    run(Command::new(python())
        .args(["-m", "venv", "venv"])
        .current_dir(app));
    let pip = |args: &[&str]| {
        run(Command::new(app.join("venv/bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--no-build-isolation",
            ])
            .args(args)
            .current_dir(app)
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"));
    };
    // No pyproject.toml and no `wheel`: pip falls back to `setup.py develop`, which writes an
    // absolute `easy-install.pth` entry and an `.egg-link`.
    pip(&["-e", "src/mypkg"]);
    // With pyproject.toml and `wheel` (Debian's copy, so no network), a PEP 660 editable
    // install: an editable finder and a `direct_url.json`, both with absolute paths.
    pip(&[&debian_wheel("wheel")]);
    pip(&["-e", "src/modern"]);
    pip(&["--target", "lib/python", "src/vend"]);
    // An absolute symlink into the app.
    std::os::unix::fs::symlink(app.join("static"), app.join("assets")).unwrap();
}

fn files_mentioning(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = vec![];
    for entry in tree(dir) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        let content = if meta.file_type().is_symlink() {
            std::fs::read_link(&entry)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if meta.is_file() {
            std::fs::read(&entry).unwrap()
        } else {
            continue;
        };
        if content.windows(needle.len()).any(|w| w == needle) {
            hits.push(entry.display().to_string());
        }
    }
    hits
}

#[test]
fn a_virtualenv_and_vendored_libraries_run_from_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("build/checkout/reloc");
    make_app(&app);
    let source = app.to_str().unwrap().to_string();
    assert!(
        !files_mentioning(&app, source.as_bytes()).is_empty(),
        "the test app should start out full of absolute paths"
    );

    let out = silver()
        .arg("pack")
        .arg(&app)
        .arg("-o")
        .arg(tmp.path().join("dist"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["warnings"],
        serde_json::json!([]),
        "every absolute path should have been fixed"
    );
    let mut kinds: Vec<&str> = report["fixups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "activate",
            "direct-url",
            "egg-link",
            "link-relativized",
            "pth",
            "python-path",
            "pyvenv-cfg",
            "record",
            "shebang",
            "system-link"
        ]
    );
    let archive = report["archive"].as_str().unwrap().to_string();

    // The source goes away entirely, so nothing can quietly still point at it.
    std::fs::rename(tmp.path().join("build"), tmp.path().join("gone")).unwrap();
    let dest = tmp.path().join("node/apps/reloc/releases/r1");
    unpacked(archive.as_ref(), &dest);
    assert_eq!(
        files_mentioning(&dest, source.as_bytes()),
        Vec::<String>::new()
    );

    let py = dest.join("venv/bin/python");
    let imported = run(Command::new(&py)
        .args([
            "-c",
            "import mypkg, modern, sys; assert modern.VALUE == 42; print(mypkg.__file__); print(modern.__file__); print(sys.prefix)",
        ])
        .current_dir(tmp.path()));
    assert!(imported.starts_with(dest.to_str().unwrap()), "{imported}");
    assert_eq!(
        run(&mut Command::new(dest.join("venv/bin/mypkg-hello"))),
        "hello from mypkg\n"
    );
    let vendored = run(Command::new(dest.join("lib/python/bin/vend-hello"))
        .env("PYTHONPATH", dest.join("lib/python")));
    assert_eq!(vendored, "hello from vend\n");
    let activated = run(Command::new("bash")
        .arg("-c")
        .arg(". venv/bin/activate && echo \"$VIRTUAL_ENV\" && command -v python")
        .current_dir(&dest));
    assert_eq!(
        activated,
        format!("{0}/venv\n{0}/venv/bin/python\n", dest.display())
    );
    let app_imports = run(Command::new(&py)
        .args([
            "-c",
            "import sys; sys.path.insert(0, 'lib/python'); import app; print('ok')",
        ])
        .current_dir(&dest));
    assert_eq!(app_imports, "ok\n");
}

#[test]
fn two_copies_with_virtualenvs_made_in_different_places_pack_to_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("ci/workspace/reloc");
    let two = tmp.path().join("elsewhere/reloc");
    make_app(&one);
    make_app(&two);
    common::set_mtimes(&one, 1_000_000_000);
    common::set_mtimes(&two, 1_700_000_000);
    let pack = |app: &Path, out: &str| common::pack_dir(app, &tmp.path().join(out)).1;
    let (a, b) = (pack(&one, "o1"), pack(&two, "o2"));
    if std::env::var_os("KEEP").is_some() {
        let _ = tmp.keep();
    }
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "{} and {} differ",
        a.display(),
        b.display()
    );
}
