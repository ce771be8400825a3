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
    /// Sign any file (a record as a co-signer, a new trust policy as its root): writes
    /// FILE.minisig, or FILE.minisig.N when that is taken. `minisign -Vm FILE` checks it.
    Sign {
        #[arg(value_parser = super::common::absolute_path)]
        file: PathBuf,
        #[arg(long, value_parser = super::common::absolute_path)]
        key: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        KeyCommand::New { name, dir, json } => new(name, dir, json),
        KeyCommand::Sign { file, key } => sign(&file, &key),
    }
}

fn sign(file: &std::path::Path, key: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("failed to read `{}`", file.display()))?;
    let secret = silver_trust::keys::read_secret(key)?;
    let comment = format!(
        "silver signature of {}",
        file.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("a file")
    );
    let signature = silver_trust::records::sign_text(&text, &comment, &secret)?;
    let base = format!("{}.minisig", file.display());
    let path = std::iter::once(PathBuf::from(&base))
        .chain((2..).map(|n| PathBuf::from(format!("{base}.{n}"))))
        .find(|p| !p.exists())
        .expect("an unused name exists");
    let opts = safefs::WriteOptions {
        mode: 0o644,
        ..safefs::WriteOptions::PRIVATE
    };
    safefs::write_atomic(&path, signature.as_bytes(), opts)
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    ui::status("Signed", format!("{} ({})", file.display(), path.display()));
    crate::out!("{}", path.display());
    Ok(())
}

fn new(name: String, dir: PathBuf, json: bool) -> anyhow::Result<()> {
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
