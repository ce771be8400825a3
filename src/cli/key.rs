//! `silver key new NAME`: an Ed25519 key pair in minisign's format (`NAME.pub`, `NAME.key`).

use std::path::PathBuf;

use anyhow::Context;

use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Make a key pair: NAME.pub (give it to nodes' trust policies) and NAME.key (secret,
    /// mode 0600, unencrypted as `minisign -G -W` makes it: keep it in CI's secret store).
    New {
        /// The key's name, e.g. `ci` or `release-manager`.
        name: String,
        /// Where to write the two files.
        #[arg(long, default_value = ".", value_parser = super::common::absolute_path)]
        dir: PathBuf,
        /// Print the paths and the public key as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let KeyCommand::New { name, dir, json } = args.command;
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if !valid {
        return Err(ui::hinted(
            format!("`{name}` is not a key name"),
            "use letters, digits, `-`, `_` and `.`",
        ));
    }
    let (public, secret) = silver_trust::keys::generate(&name)?;
    let (pub_path, key_path) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    for path in [&pub_path, &key_path] {
        if path.exists() {
            return Err(ui::hinted(
                format!("`{}` exists: a key is never overwritten", path.display()),
                "choose another name, or move the old key away first",
            ));
        }
    }
    safefs::write_atomic(&key_path, secret.as_bytes(), safefs::WriteOptions::PRIVATE)
        .with_context(|| format!("failed to write `{}`", key_path.display()))?;
    let public_opts = safefs::WriteOptions {
        mode: 0o644,
        ..safefs::WriteOptions::PRIVATE
    };
    safefs::write_atomic(&pub_path, public.as_bytes(), public_opts)
        .with_context(|| format!("failed to write `{}`", pub_path.display()))?;
    let key = silver_trust::keys::parse_public(&public)?;
    let line = public.lines().nth(1).unwrap_or_default().to_string();
    ui::status(
        "Created",
        format!(
            "key {} ({} and {})",
            silver_trust::keys::public_id(&key),
            pub_path.display(),
            key_path.display()
        ),
    );
    if json {
        super::common::print_json(&serde_json::json!({
            "id": silver_trust::keys::public_id(&key),
            "public_key": line,
            "public": pub_path,
            "secret": key_path,
        }))?;
    } else {
        crate::out!("{line}");
    }
    Ok(())
}
