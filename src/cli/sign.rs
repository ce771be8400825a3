//! `silver sign ARTIFACT --key KEY`: CI's signed build record of an artifact (who built which
//! id from which commit, when and where), written beside it as `ARTIFACT.build.json` and
//! `ARTIFACT.build.json.minisig` (`minisign -Vm` checks it).

use std::path::{Path, PathBuf};

use anyhow::Context;
use silver_trust::{records, Build, Statement};

use super::limits::LimitArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.silver` artifact (verified whole before it is signed).
    #[arg(value_parser = super::common::absolute_path)]
    pub artifact: PathBuf,
    /// The secret key (`silver key new`, or minisign's; an encrypted one reads its password
    /// from SILVER_KEY_PASSWORD).
    #[arg(long, value_parser = super::common::absolute_path)]
    pub key: PathBuf,
    /// The app [default: app.ini's app_name].
    #[arg(long)]
    pub app: Option<silver_types::AppName>,
    /// The source commit [default: GITHUB_SHA, CI_COMMIT_SHA, or `git rev-parse HEAD` here].
    #[arg(long)]
    pub commit: Option<String>,
    /// Where to write the record [default: ARTIFACT.build.json].
    #[arg(short, long, value_parser = super::common::absolute_path)]
    pub output: Option<PathBuf>,
    /// Print the record's path, its signature's path and the record as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = packer::ReadConfig {
        limits: args.limits.resolve(),
        ..Default::default()
    };
    let verified = packer::verify(&args.artifact, &config)
        .with_context(|| format!("`{}` is not a silver artifact", args.artifact.display()))?;
    let app = match (&args.app, &verified.app) {
        (Some(app), _) => app.clone(),
        (None, Some(name)) => silver_types::AppName::parse(name)?,
        (None, None) => {
            return Err(ui::hinted(
                "its app.ini names no app_name",
                "pass --app NAME",
            ))
        }
    };
    let key = silver_trust::keys::read_secret(&args.key)?;
    let statement = Statement::Build(Build {
        app,
        id: silver_types::ArtifactId::parse(&verified.id).context("the artifact's id")?,
        sha256: format!("sha256:{}", verified.archive_sha256),
        commit: args.commit.clone().or_else(source_commit),
        built_at: silver_wire::api::rfc3339(packer_now()),
        built_by: super::node::who(),
        ci_run: ci_run(),
    });
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| with_suffix(&args.artifact, ".build.json"));
    let written = write_signed(&statement, &key, &out)?;
    ui::status("Signed", statement.describe());
    super::sign::print(&written, args.json)
}

/// A record file and its signature, as written.
#[derive(serde::Serialize)]
pub struct Written {
    pub record: PathBuf,
    pub signature: PathBuf,
    pub statement: Statement,
}

/// Writes the record and its `.minisig` (each atomically: never a record without its
/// signature's old self beside it).
pub fn write_signed(
    statement: &Statement,
    key: &silver_trust::keys::SecretKey,
    out: &Path,
) -> anyhow::Result<Written> {
    let text = statement.to_text();
    let signature = records::sign(statement, &text, key)?;
    let sig_path = with_suffix(out, ".minisig");
    let opts = safefs::WriteOptions {
        mode: 0o644,
        ..safefs::WriteOptions::PRIVATE
    };
    safefs::write_atomic(out, text.as_bytes(), opts)
        .with_context(|| format!("failed to write `{}`", out.display()))?;
    safefs::write_atomic(&sig_path, signature.as_bytes(), opts)
        .with_context(|| format!("failed to write `{}`", sig_path.display()))?;
    Ok(Written {
        record: out.to_path_buf(),
        signature: sig_path,
        statement: statement.clone(),
    })
}

pub fn print(written: &Written, json: bool) -> anyhow::Result<()> {
    if json {
        return super::common::print_json(written);
    }
    crate::out!("{}", written.record.display());
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub fn packer_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The commit CI says it built, else the repository's HEAD here.
fn source_commit() -> Option<String> {
    for var in [
        "GITHUB_SHA",
        "CI_COMMIT_SHA",
        "BUILDKITE_COMMIT",
        "GIT_COMMIT",
    ] {
        if let Ok(v) = std::env::var(var) {
            return Some(v);
        }
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The CI run that built it, where the CI says.
fn ci_run() -> Option<String> {
    if let (Ok(server), Ok(repo), Ok(run)) = (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
        std::env::var("GITHUB_RUN_ID"),
    ) {
        return Some(format!("{server}/{repo}/actions/runs/{run}"));
    }
    std::env::var("CI_JOB_URL")
        .or_else(|_| std::env::var("BUILDKITE_BUILD_URL"))
        .ok()
}
