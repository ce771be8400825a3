//! `silver promote APP ENV ID --key KEY`: a signed promotion record (app, environment, id, a
//! sequence that only grows, an expiry). A rollback is a new promotion of the old id.

use std::path::PathBuf;

use silver_trust::{Promotion, Statement};

use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub app: silver_types::AppName,
    /// The environment, as nodes' trust policies name theirs (`production`, `staging`).
    pub environment: String,
    /// The whole artifact id (`b3:` and 64 hex digits).
    #[arg(value_parser = parse_id)]
    pub id: silver_types::ArtifactId,
    /// The secret key of someone the policy names for the promote role.
    #[arg(long, value_parser = super::common::absolute_path)]
    pub key: PathBuf,
    /// The sequence number [default: milliseconds since 1970, which only grows]. A node takes
    /// nothing at or below the highest it has taken for the app and environment.
    #[arg(long)]
    pub sequence: Option<u64>,
    /// How long it may start activations: `30d`, `12h`, `90m` [default: 30d]. It never stops
    /// a release already running.
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    pub expires: u64,
    /// Where to write the record [default: promote-APP-ENV-SEQUENCE.json here].
    #[arg(short, long, value_parser = super::common::absolute_path)]
    pub output: Option<PathBuf>,
    /// Print the record's path, its signature's path and the record as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also keep the record beside the artifact in this repository (`REGISTRY/REPO`, where
    /// `silver push` sent it), so nodes deploying it from there get it.
    #[arg(long, value_name = "REGISTRY/REPO")]
    pub registry: Option<silver_registry::Reference>,
    #[command(flatten)]
    pub registries: super::registry::RegistryArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let environment = args.environment.trim();
    if environment.is_empty() || environment.chars().any(|c| c.is_control() || c == '/') {
        return Err(ui::hinted(
            format!("`{}` is not an environment name", args.environment),
            "name it as the nodes' trust.toml does, e.g. production",
        ));
    }
    let now = super::sign::packer_now();
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let sequence = args.sequence.unwrap_or(millis);
    let statement = Statement::Promotion(Promotion {
        app: args.app.clone(),
        environment: environment.to_string(),
        id: args.id,
        sequence,
        expires: silver_wire::api::rfc3339(now + args.expires),
        promoted_at: silver_wire::api::rfc3339(now),
        promoted_by: super::node::who(),
    });
    let key = silver_trust::keys::read_secret(&args.key)?;
    let out = match &args.output {
        Some(path) => path.clone(),
        None => std::env::current_dir()?.join(format!(
            "promote-{}-{environment}-{sequence}.json",
            args.app
        )),
    };
    let written = super::sign::write_signed(&statement, &key, &out)?;
    ui::status("Promoted", statement.describe());
    if let Some(repo) = &args.registry {
        let config = args.registries.resolve();
        let record = super::records::load(&written.record)?;
        let runtime = super::node::runtime()?;
        let prefix = silver_types::IdPrefix::from(args.id);
        let pushed = runtime.block_on(super::registry::find_id(repo, &prefix, &config))?;
        let held =
            runtime.block_on(super::registry::append_records(&pushed, &[record], &config))?;
        ui::status(
            "Recorded",
            format!("{held} signed record(s) beside {pushed}"),
        );
    }
    super::sign::print(&written, args.json)
}

/// `30d`, `12h`, `90m`, `45s` as seconds.
fn parse_duration(given: &str) -> Result<u64, String> {
    let (number, unit) = given.split_at(
        given
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(given.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{given}` is not a duration: write 30d, 12h, 90m or 45s"))?;
    let scale = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => {
            return Err(format!(
                "`{given}` is not a duration: write 30d, 12h, 90m or 45s"
            ))
        }
    };
    n.checked_mul(scale)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("`{given}` is not a duration above zero"))
}

fn parse_id(given: &str) -> Result<silver_types::ArtifactId, String> {
    silver_types::ArtifactId::parse(given)
        .ok_or_else(|| format!("`{given}` is not a whole artifact id: write b3: and 64 hex digits, as `silver pack` prints it"))
}
