//! Baking a recipe into a node image (design §7), in cached steps:
//!
//! 1. `bootstrap`: mmdebstrap builds the root filesystem from the distribution's packages.
//!    Keyed by the distribution, suite, mirror, keyring, architecture, package list, and the
//!    resolved package set (`resolve`: every version the mirror would install today).
//! 2. `customize`: the recipe's files, users and services, the `silver` binary and its unit,
//!    then generalization (no machine-id, SSH host keys, apt lists, logs or cloud-init state),
//!    packed as a deterministic tar. Keyed by the bootstrap's key and every input file's hash,
//!    so a files-only change reuses the bootstrap.
//! 3. `outputs`: `rootfs.tar.zst`, a raw ext4 disk filled from the tree with `mke2fs -d` (no
//!    loop mounts), `disk.qcow2`, the kernel and initrd, and `manifest.json`.
//!
//! Every step runs with `SOURCE_DATE_EPOCH` fixed, so two bakes against the same package
//! versions give the same rootfs digest.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::recipe::Recipe;

/// The timestamp every file and tool in an image is pinned to (2024-01-01 UTC).
pub const EPOCH: u64 = 1_704_067_200;

/// Everything a bake needs, resolved by the CLI.
#[derive(Debug, Clone)]
pub struct BakeConfig {
    pub recipe_path: PathBuf,
    pub out_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// The `silver` binary to install as the node agent.
    pub silver_binary: PathBuf,
    /// Ignore cached steps (what `--verify` does to rebuild).
    pub no_cache: bool,
}

/// What a step did, and why.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: String,
    pub key: String,
    pub reused: bool,
    pub why: String,
    pub seconds: f64,
}

/// `manifest.json`: what went into an image and what came out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageManifest {
    pub name: String,
    pub recipe_blake3: String,
    /// SHA-256 of the uncompressed, deterministic root filesystem tar.
    pub rootfs_sha256: String,
    pub packages: BTreeMap<String, String>,
    /// The agent as baked in: where `silver node boot` puts its token and TLS settings.
    #[serde(default)]
    pub agent: crate::recipe::Agent,
    /// Output file name → SHA-256.
    pub outputs: BTreeMap<String, String>,
    pub source_date_epoch: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BakeReport {
    pub manifest: ImageManifest,
    pub out_dir: PathBuf,
    pub steps: Vec<StepReport>,
}

/// Bakes a recipe. `on_step` hears each step as it finishes.
pub fn bake(config: &BakeConfig, on_step: &dyn Fn(&StepReport)) -> Result<BakeReport, Error> {
    let recipe = Recipe::load(&config.recipe_path)?;
    let recipe_text = std::fs::read(&config.recipe_path).map_err(|e| io(&config.recipe_path, e))?;
    mkdir(&config.cache_dir)?;
    mkdir(&config.out_dir)?;
    let mut steps = Vec::new();

    let started = Instant::now();
    let (boot_parts, offline) = match crate::resolve::resolve(&recipe) {
        Ok(resolved) => (bootstrap_parts(&recipe, &resolved), None),
        Err(e) => match offline_bootstrap(&recipe, config) {
            Some(parts) => (parts, Some(e)),
            None => return Err(e),
        },
    };
    let boot_key = hash_parts(&boot_parts);
    let boot_dir = step_dir(&config.cache_dir, "bootstrap", &boot_key);
    let step = Step {
        name: "bootstrap",
        image: &recipe.image.name,
        key: &boot_key,
        parts: &boot_parts,
        dir: &boot_dir,
    };
    let mut report = run_step(&step, config, || bootstrap(&recipe, &boot_dir))?;
    report.seconds = started.elapsed().as_secs_f64();
    if let Some(e) = offline {
        // apt's first `E:` line says why; the rest of its output is noise here.
        let text = e.to_string();
        let cause = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("E: "))
            .unwrap_or(&text);
        report.why = format!(
            "reused without checking the mirror, whose package set could not be resolved: {cause}"
        );
    }
    on_step(&report);
    steps.push(report);

    let custom_parts = customize_parts(&recipe, config, &boot_key)?;
    let custom_key = hash_parts(&custom_parts);
    let custom_dir = step_dir(&config.cache_dir, "customize", &custom_key);
    let step = Step {
        name: "customize",
        image: &recipe.image.name,
        key: &custom_key,
        parts: &custom_parts,
        dir: &custom_dir,
    };
    let report = run_step(&step, config, || {
        customize(&recipe, config, &boot_dir, &custom_dir)
    })?;
    on_step(&report);
    steps.push(report);

    let started = Instant::now();
    let manifest = outputs(
        &recipe,
        &recipe_text,
        &custom_dir,
        &boot_dir,
        &config.out_dir,
    )?;
    let report = StepReport {
        step: "outputs".into(),
        key: custom_key.clone(),
        reused: false,
        why: format!("wrote {}", recipe.image.formats.join(", ")),
        seconds: started.elapsed().as_secs_f64(),
    };
    on_step(&report);
    steps.push(report);
    Ok(BakeReport {
        manifest,
        out_dir: config.out_dir.clone(),
        steps,
    })
}

/// One cached step: its inputs (`parts`, hashed into `key`) and where its result lives.
struct Step<'a> {
    name: &'a str,
    image: &'a str,
    key: &'a str,
    parts: &'a [String],
    dir: &'a Path,
}

/// Runs a step unless its result is cached under `dir` (complete only once `dir/done` exists),
/// and says why it was or was not reused.
fn run_step(
    step: &Step,
    config: &BakeConfig,
    build: impl FnOnce() -> Result<(), Error>,
) -> Result<StepReport, Error> {
    let started = Instant::now();
    let done = step.dir.join("done");
    let latest = latest_file(&config.cache_dir, step.image, step.name);
    let report = |reused: bool, why: String| StepReport {
        step: step.name.into(),
        key: step.key.into(),
        reused,
        why,
        seconds: started.elapsed().as_secs_f64(),
    };
    if !config.no_cache && done.is_file() {
        let _ = std::fs::write(&latest, step.key);
        return Ok(report(
            true,
            "reused: the cache holds a result for exactly these inputs".into(),
        ));
    }
    let why = if config.no_cache {
        "rebuilt: the cache was bypassed".to_string()
    } else {
        changed_inputs(&config.cache_dir, &latest, step.name, step.parts)
    };
    if step.dir.exists() {
        std::fs::remove_dir_all(step.dir).map_err(|e| io(step.dir, e))?;
    }
    mkdir(step.dir)?;
    if let Err(e) = build() {
        let _ = std::fs::remove_dir_all(step.dir);
        return Err(e);
    }
    let inputs = step.dir.join("inputs.txt");
    std::fs::write(&inputs, step.parts.join("\n") + "\n").map_err(|e| io(&inputs, e))?;
    std::fs::write(&done, step.key).map_err(|e| io(&done, e))?;
    let _ = std::fs::write(&latest, step.key);
    Ok(report(false, why))
}

/// Where a step's result for `key` lives in the cache: `<step>-<first 16 hex digits>/`.
fn step_dir(cache: &Path, step: &str, key: &str) -> PathBuf {
    cache.join(format!("{step}-{}", key.get(..16).unwrap_or(key)))
}

/// The key of an image's last bake of a step, which `--explain` and offline bakes compare with.
fn latest_file(cache: &Path, image: &str, step: &str) -> PathBuf {
    cache.join(format!("{image}-{step}.latest"))
}

/// Why a step's cached result does not fit: the inputs that differ from the last bake's.
fn changed_inputs(cache: &Path, latest: &Path, name: &str, parts: &[String]) -> String {
    let Ok(previous_key) = std::fs::read_to_string(latest) else {
        return "built: the first bake of this image in this cache".into();
    };
    let previous_dir = step_dir(cache, name, &previous_key);
    let Ok(previous) = std::fs::read_to_string(previous_dir.join("inputs.txt")) else {
        return "built: the last bake's result is no longer cached".into();
    };
    let before: Vec<&str> = previous.lines().collect();
    let mut changed: Vec<String> = parts
        .iter()
        .map(String::as_str)
        .filter(|p| !before.contains(p))
        .map(input_label)
        .collect();
    // A new suite or package list changes hundreds of resolved packages: name a few.
    const SHOWN: usize = 8;
    if changed.len() > SHOWN {
        let more = changed.len() - SHOWN;
        changed.truncate(SHOWN);
        changed.push(format!("and {more} more"));
    }
    let removed = before
        .iter()
        .filter(|p| !parts.iter().any(|q| q == *p))
        .count();
    format!(
        "built: inputs changed since the last bake ({}; {removed} input(s) gone or changed)",
        if changed.is_empty() {
            "none added".to_string()
        } else {
            changed.join(", ")
        }
    )
}

/// `file /etc/motd 0644 …` → `file /etc/motd`; `services [...]` → `services`.
fn input_label(part: &str) -> String {
    let mut words = part.split_whitespace();
    match (words.next(), words.next()) {
        (Some(kind @ ("file" | "user")), Some(name)) => format!("{kind} {name}"),
        // `package libc6 2.36-9+deb12u14 amd64`: the version is the news.
        (Some("package"), Some(_)) => part.to_string(),
        (Some(kind), _) => kind.to_string(),
        _ => part.to_string(),
    }
}

/// The recipe's requested parts, then one `package NAME VERSION ARCH` per resolved package: a
/// mirror update that changes one version changes the key, and `--explain` names the package.
fn bootstrap_parts(recipe: &Recipe, resolved: &[String]) -> Vec<String> {
    let mut parts = requested_parts(recipe);
    parts.extend(resolved.iter().map(|p| format!("package {p}")));
    parts
}

fn requested_parts(recipe: &Recipe) -> Vec<String> {
    let i = &recipe.image;
    let mut packages = recipe.packages.include.clone();
    packages.sort();
    vec![
        "bootstrap v2".into(),
        format!("distribution {}", i.distribution),
        format!("suite {}", i.suite),
        format!("mirror {}", i.mirror),
        format!("keyring {}", i.keyring),
        format!("architecture {}", i.architecture),
        format!("packages {}", packages.join(",")),
    ]
}

/// With the mirror out of reach, the last bootstrap of this image for the same requested
/// packages (its parts, as recorded), so a files-only re-bake still works offline. `None` when
/// there is none: then the bake cannot go on and the resolution's error is the one to show.
fn offline_bootstrap(recipe: &Recipe, config: &BakeConfig) -> Option<Vec<String>> {
    if config.no_cache {
        return None;
    }
    let latest = latest_file(&config.cache_dir, &recipe.image.name, "bootstrap");
    let key = std::fs::read_to_string(latest).ok()?;
    let dir = step_dir(&config.cache_dir, "bootstrap", &key);
    if !dir.join("done").is_file() {
        return None;
    }
    let recorded = std::fs::read_to_string(dir.join("inputs.txt")).ok()?;
    let parts: Vec<String> = recorded.lines().map(str::to_string).collect();
    let requested = requested_parts(recipe);
    parts.starts_with(&requested).then_some(parts)
}

fn customize_parts(
    recipe: &Recipe,
    config: &BakeConfig,
    boot_key: &str,
) -> Result<Vec<String>, Error> {
    let mut parts: Vec<String> = vec!["customize v1".into(), format!("bootstrap {boot_key}")];
    for f in &recipe.files {
        let content = file_content(&config.recipe_path, f)?;
        parts.push(format!(
            "file {} {} {} {}",
            f.path,
            f.mode,
            f.owner,
            blake3::hash(&content).to_hex()
        ));
    }
    for u in &recipe.users {
        parts.push(format!("user {} {u:?}", u.name));
    }
    parts.push(format!("services {:?}", recipe.services.enable));
    parts.push(format!("agent {:?}", recipe.agent));
    let binary = std::fs::read(&config.silver_binary).map_err(|e| io(&config.silver_binary, e))?;
    parts.push(format!("silver-binary {}", blake3::hash(&binary).to_hex()));
    Ok(parts)
}

fn hash_parts(parts: &[String]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

fn file_content(recipe_path: &Path, f: &crate::recipe::File) -> Result<Vec<u8>, Error> {
    match (&f.content, &f.source) {
        (Some(c), _) => Ok(c.clone().into_bytes()),
        (None, Some(s)) => {
            let path = Recipe::source_path(recipe_path, s);
            std::fs::read(&path).map_err(|e| io(&path, e))
        }
        (None, None) => Ok(vec![]),
    }
}

/// mmdebstrap into `dir/bootstrap.tar`, with the package versions in `dir/packages.tsv`.
fn bootstrap(recipe: &Recipe, dir: &Path) -> Result<(), Error> {
    let i = &recipe.image;
    let tar = dir.join("bootstrap.tar");
    let packages = dir.join("packages.tsv");
    let mut cmd = Command::new("mmdebstrap");
    cmd.env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .args(crate::resolve::mmdebstrap_args(recipe))
        .arg("--quiet");
    cmd.arg(format!(
        "--customize-hook=chroot \"$1\" dpkg-query -W -f='${{Package}}\\t${{Version}}\\n' > {}",
        shell_quote(&packages.display().to_string())
    ))
    .arg(&i.suite)
    .arg(&tar)
    .arg(&i.mirror);
    run(cmd, "mmdebstrap")
}

/// The recipe applied to the bootstrap tree, generalized, and packed deterministically into
/// `dir/rootfs.tar`.
fn customize(
    recipe: &Recipe,
    config: &BakeConfig,
    boot_dir: &Path,
    dir: &Path,
) -> Result<(), Error> {
    let tree = dir.join("tree");
    extract(&boot_dir.join("bootstrap.tar"), &tree)?;
    let result = apply(recipe, config, &tree).and_then(|()| pack(&tree, &dir.join("rootfs.tar")));
    // The tree is only a workspace; the tar is the step's result.
    let _ = std::fs::remove_dir_all(&tree);
    result
}

fn apply(recipe: &Recipe, config: &BakeConfig, tree: &Path) -> Result<(), Error> {
    for u in &recipe.users {
        let mut cmd = Command::new("useradd");
        cmd.env("SOURCE_DATE_EPOCH", EPOCH.to_string())
            .arg("--root")
            .arg(tree);
        if u.system {
            cmd.arg("--system");
        }
        if let Some(home) = &u.home {
            cmd.args(["--home-dir", home, "--create-home"]);
        }
        if let Some(shell) = &u.shell {
            cmd.args(["--shell", shell]);
        }
        if !u.groups.is_empty() {
            cmd.args(["--groups", &u.groups.join(",")]);
        }
        cmd.arg(&u.name);
        run(cmd, &format!("useradd {}", u.name))?;
    }
    let bin = tree.join("usr/local/bin/silver");
    mkdir(bin.parent().expect("has a parent"))?;
    std::fs::copy(&config.silver_binary, &bin).map_err(|e| io(&bin, e))?;
    chmod(&bin, 0o755)?;
    let unit = tree.join("etc/systemd/system/silver-agent.service");
    mkdir(unit.parent().expect("has a parent"))?;
    std::fs::write(&unit, agent_unit(recipe)).map_err(|e| io(&unit, e))?;
    chmod(&unit, 0o644)?;
    for f in &recipe.files {
        let content = file_content(&config.recipe_path, f)?;
        let dest = tree.join(f.path.trim_start_matches('/'));
        mkdir(dest.parent().expect("absolute paths have parents"))?;
        std::fs::write(&dest, content).map_err(|e| io(&dest, e))?;
        chmod(&dest, u32::from_str_radix(&f.mode, 8).unwrap_or(0o644))?;
        let mut chown = Command::new("chroot");
        chown.arg(tree).args(["chown", &f.owner, &f.path]);
        run(chown, &format!("chown {}", f.path))?;
    }
    if !recipe.services.enable.is_empty() {
        let mut cmd = Command::new("systemctl");
        cmd.arg(format!("--root={}", tree.display()))
            .arg("enable")
            .args(&recipe.services.enable);
        run(cmd, "systemctl enable")?;
    }
    generalize(tree)
}

/// The agent's systemd unit, from the recipe's `[agent]`. Its token arrives at first boot (the
/// NoCloud seed writes `<root>/token`), never in the image; without one the agent makes its
/// own, which `--node ssh://` reads over ssh. So does its TLS certificate: the seed's
/// `/etc/silver/agent.env` names it and turns on the `remote` listener; without that file the
/// control API stays on loopback. It runs as root, so each app gets a Unix user of its own (no
/// `--app-user`, which would put every app under one).
pub fn agent_unit(recipe: &Recipe) -> String {
    let a = &recipe.agent;
    format!(
        "[Unit]\nDescription=silver node agent\n\
         # After cloud-init's first stage, which writes the token and the authorized keys.\n\
         After=network-online.target cloud-init.service postgresql.service\n\
         Wants=network-online.target\n\n[Service]\n\
         ExecStart=/usr/local/bin/silver agent --root {} --listen {} --http {}{}\n\
         Environment=SILVER_LOG=info\n\
         # Per-instance: SILVER_TLS_LISTEN, SILVER_TLS_CERT and SILVER_TLS_KEY.\n\
         EnvironmentFile=-/etc/silver/agent.env\n\
         Restart=on-failure\nRestartSec=2\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        a.root,
        a.listen,
        a.http,
        a.https
            .as_ref()
            .map_or(String::new(), |h| format!(" --https {h}"))
    )
}

/// What must differ per machine, or not outlive the build, is removed.
fn generalize(tree: &Path) -> Result<(), Error> {
    // An empty machine-id: systemd makes a new one on first boot.
    let machine_id = tree.join("etc/machine-id");
    std::fs::write(&machine_id, b"").map_err(|e| io(&machine_id, e))?;
    let _ = std::fs::remove_file(tree.join("var/lib/dbus/machine-id"));
    // The TLS key ssl-cert made at install: secret, so made again on the machine (the recipes'
    // silver-firstboot.service).
    for secret in [
        "etc/ssl/private/ssl-cert-snakeoil.key",
        "etc/ssl/certs/ssl-cert-snakeoil.pem",
    ] {
        let _ = std::fs::remove_file(tree.join(secret));
    }
    // A PostgreSQL cluster made at install has its own system identifier (and WAL): every node
    // would share it. The machine makes its own at first boot (silver-firstboot.service).
    for base in ["var/lib/postgresql", "etc/postgresql"] {
        let Ok(versions) = std::fs::read_dir(tree.join(base)) else {
            continue;
        };
        for v in versions.flatten() {
            let main = v.path().join("main");
            if main.is_dir() {
                std::fs::remove_dir_all(&main).map_err(|e| io(&main, e))?;
            }
        }
    }
    let hostname = tree.join("etc/hostname");
    std::fs::write(&hostname, b"localhost\n").map_err(|e| io(&hostname, e))?;
    for dir in [
        "etc/ssh",
        "var/lib/apt/lists",
        "var/log",
        "var/cache/apt",
        "var/lib/cloud",
        "tmp",
        "var/tmp",
        "root",
    ] {
        let dir = tree.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let remove = match dir.file_name().and_then(|n| n.to_str()) {
                // Host keys are made at first boot (ssh's own unit, or cloud-init).
                Some("ssh") => name.starts_with("ssh_host_"),
                Some("lists") => name != "partial" && name != "lock",
                Some("log") => true,
                _ => true,
            };
            if !remove {
                continue;
            }
            if path.is_dir() && !path.is_symlink() {
                // Keep log directories (services expect them); empty them.
                if dir.ends_with("var/log") {
                    empty_dir(&path)?;
                    continue;
                }
                std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
            } else {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
            }
        }
    }
    Ok(())
}

fn empty_dir(dir: &Path) -> Result<(), Error> {
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten() {
        let path = e.path();
        if path.is_dir() && !path.is_symlink() {
            empty_dir(&path)?;
        } else {
            std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        }
    }
    Ok(())
}

fn extract(tar: &Path, tree: &Path) -> Result<(), Error> {
    mkdir(tree)?;
    let mut cmd = Command::new("tar");
    cmd.args([
        "--extract",
        "--numeric-owner",
        "--preserve-permissions",
        "--xattrs",
        "--xattrs-include=*",
        "--file",
    ])
    .arg(tar)
    .arg("--directory")
    .arg(tree);
    run(cmd, "tar --extract")
}

/// A tar that depends only on the tree's contents: sorted names, pinned times, numeric owners,
/// no access or change times.
fn pack(tree: &Path, tar: &Path) -> Result<(), Error> {
    let mut cmd = Command::new("tar");
    cmd.args([
        "--create",
        "--sort=name",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--clamp-mtime",
        &format!("--mtime=@{EPOCH}"),
        "--file",
    ])
    .arg(tar)
    .arg("--directory")
    .arg(tree)
    .arg(".");
    run(cmd, "tar --create")
}

fn outputs(
    recipe: &Recipe,
    recipe_text: &[u8],
    custom_dir: &Path,
    boot_dir: &Path,
    out: &Path,
) -> Result<ImageManifest, Error> {
    let rootfs = custom_dir.join("rootfs.tar");
    let formats = &recipe.image.formats;
    let has = |f: &str| formats.iter().any(|x| x == f);
    // The compressed tar and the disk images come from the same tar and share nothing else:
    // made side by side, the step takes as long as the slower of the two.
    let (compressed, disks) = std::thread::scope(|scope| {
        let compressed = scope.spawn(|| -> Result<Option<String>, Error> {
            if !has("rootfs") {
                return Ok(None);
            }
            let dest = out.join("rootfs.tar.zst");
            compress(&rootfs, &dest)?;
            sha256_file(&dest).map(Some)
        });
        let disks = (|| -> Result<BTreeMap<String, String>, Error> {
            let mut outputs = BTreeMap::new();
            if has("raw") || has("qcow2") || has("kernel") {
                let tree = out.join(".tree");
                if tree.exists() {
                    std::fs::remove_dir_all(&tree).map_err(|e| io(&tree, e))?;
                }
                extract(&rootfs, &tree)?;
                let result = disk_outputs(recipe, &tree, out, &mut outputs);
                let _ = std::fs::remove_dir_all(&tree);
                result?;
            }
            Ok(outputs)
        })();
        (
            compressed
                .join()
                .expect("the compressing thread does not panic"),
            disks,
        )
    });
    let mut outputs = disks?;
    if let Some(sha) = compressed? {
        outputs.insert("rootfs.tar.zst".to_string(), sha);
    }
    let packages = std::fs::read_to_string(boot_dir.join("packages.tsv"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect();
    let manifest = ImageManifest {
        name: recipe.image.name.clone(),
        recipe_blake3: blake3::hash(recipe_text).to_hex().to_string(),
        rootfs_sha256: sha256_file(&rootfs)?,
        packages,
        agent: recipe.agent.clone(),
        outputs,
        source_date_epoch: EPOCH,
    };
    let path = out.join("manifest.json");
    let json = serde_json_like(&manifest);
    std::fs::write(&path, json).map_err(|e| io(&path, e))?;
    Ok(manifest)
}

fn disk_outputs(
    recipe: &Recipe,
    tree: &Path,
    out: &Path,
    outputs: &mut BTreeMap<String, String>,
) -> Result<(), Error> {
    let formats = &recipe.image.formats;
    let has = |f: &str| formats.iter().any(|x| x == f);
    if has("kernel") {
        for (prefix, name) in [("vmlinuz-", "vmlinuz"), ("initrd.img-", "initrd.img")] {
            let found = std::fs::read_dir(tree.join("boot"))
                .map_err(|e| io(&tree.join("boot"), e))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
                })
                .max();
            let Some(src) = found else {
                return Err(Error::Invalid {
                    path: PathBuf::from(&recipe.image.name),
                    field: "packages.include".into(),
                    problem: crate::error::FieldProblem::NoKernel {
                        prefix: prefix.to_string(),
                    },
                });
            };
            let dest = out.join(name);
            std::fs::copy(&src, &dest).map_err(|e| io(&dest, e))?;
            outputs.insert(name.to_string(), sha256_file(&dest)?);
        }
    }
    if has("raw") || has("qcow2") {
        let raw = out.join("disk.raw");
        let _ = std::fs::remove_file(&raw);
        // Fixed UUID and hash seed, and a fake clock: the filesystem's metadata depends on the
        // tree alone. `-d` fills it from the directory: no loop mount, no root-only mount.
        let uuid = "5117e700-0000-4000-8000-000000000001";
        let mut cmd = Command::new("mke2fs");
        // mke2fs 1.47.1 and later give every inode SOURCE_DATE_EPOCH's times (1.47.0 copies
        // the tree's ctimes, which are the time of this bake); the C locale fixes its sort.
        cmd.env("E2FSPROGS_FAKE_TIME", EPOCH.to_string())
            .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
            .env("LC_ALL", "C")
            .args(["-q", "-F", "-t", "ext4", "-L", "silver-root", "-U", uuid])
            .arg("-E")
            .arg(format!("root_owner=0:0,hash_seed={uuid}"))
            .arg("-d")
            .arg(tree)
            .arg(&raw)
            .arg(format!("{}K", recipe.disk_bytes() / 1024));
        run(cmd, "mke2fs")?;
        if has("qcow2") {
            let qcow = out.join("disk.qcow2");
            let _ = std::fs::remove_file(&qcow);
            let mut cmd = Command::new("qemu-img");
            cmd.args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
                .arg(&raw)
                .arg(&qcow);
            run(cmd, "qemu-img convert")?;
            outputs.insert("disk.qcow2".into(), sha256_file(&qcow)?);
        }
        if has("raw") {
            outputs.insert("disk.raw".into(), sha256_file(&raw)?);
        } else {
            let _ = std::fs::remove_file(&raw);
        }
    }
    Ok(())
}

fn compress(src: &Path, dest: &Path) -> Result<(), Error> {
    let mut input = std::fs::File::open(src).map_err(|e| io(src, e))?;
    let tmp = dest.with_extension("zst.partial");
    let file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    // Level 6 on every core: within a few percent of level 9's size at a third of its time.
    // zstd's output does not depend on the number of workers, so the bytes stay reproducible.
    let mut enc = zstd::Encoder::new(file, 6).map_err(|e| io(&tmp, e))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    enc.multithread(workers).map_err(|e| io(&tmp, e))?;
    std::io::copy(&mut input, &mut enc).map_err(|e| io(&tmp, e))?;
    enc.finish().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, dest).map_err(|e| io(dest, e))
}

fn sha256_file(path: &Path) -> Result<String, Error> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn serde_json_like(m: &ImageManifest) -> String {
    serde_json::to_string_pretty(m).expect("serializable") + "\n"
}

fn run(mut cmd: Command, what: &str) -> Result<(), Error> {
    let out = cmd.output().map_err(|source| Error::Spawn {
        tool: what.into(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::tool_failed(what, &out, 15))
}

/// `text` as one POSIX sh word (the `shlex` crate).
fn shell_quote(text: &str) -> String {
    // NUL ends a C string: no shell word holds one, so none is kept (none reaches here from
    // the CLI, and config values refuse it).
    shlex::try_quote(&text.replace('\0', ""))
        .expect("only NUL fails to quote")
        .into_owned()
}

fn mkdir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))
}

fn chmod(path: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = include_str!("../../image-recipes/debian-bookworm.toml");
    const HTTP: &str = "http = \"0.0.0.0:80\"\n";

    fn recipe(https: &str) -> Result<Recipe, Error> {
        let text = RECIPE.replace(HTTP, &format!("{HTTP}{https}"));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../image-recipes/r.toml");
        Recipe::parse(&text, &dir)
    }

    #[test]
    fn the_agent_serves_https_only_when_the_recipe_says_where() {
        assert!(RECIPE.contains(HTTP));
        assert!(!agent_unit(&recipe("").unwrap()).contains("--https"));
        let unit = agent_unit(&recipe("https = \"0.0.0.0:443\"\n").unwrap());
        assert!(
            unit.contains("--http 0.0.0.0:80 --https 0.0.0.0:443\n"),
            "{unit}"
        );
        let e = recipe("https = \"443\"\n").unwrap_err().to_string();
        assert!(e.contains("agent.https"), "{e}");
    }
}
