//! `--record FILE`: signed records sent with deploy, activate and rollback. FILE is the record
//! (`silver sign` or `silver promote` wrote it); its signatures are `FILE.minisig` and any
//! `FILE.minisig.*` beside it (a co-signer's `minisign -S -m FILE -x FILE.minisig.2`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use silver_types::SignedRecord;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct RecordArgs {
    /// A signed build or promotion record to send (repeat for several); its signatures are
    /// FILE.minisig and FILE.minisig.* beside it.
    #[arg(long = "record", value_name = "FILE", value_parser = super::common::absolute_path)]
    pub records: Vec<PathBuf>,
}

impl RecordArgs {
    pub fn load(&self) -> anyhow::Result<Vec<SignedRecord>> {
        self.records.iter().map(|path| load(path)).collect()
    }
}

/// A record file and the signatures beside it.
pub fn load(path: &Path) -> anyhow::Result<SignedRecord> {
    let statement = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the record `{}`", path.display()))?;
    silver_trust::Statement::parse(&statement)
        .with_context(|| format!("`{}` is not a silver record", path.display()))?;
    Ok(SignedRecord {
        statement,
        signatures: signatures_of(path)?,
    })
}

/// `FILE.minisig`, then `FILE.minisig.*` in name order.
pub fn signatures_of(path: &Path) -> anyhow::Result<Vec<String>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let base = format!(
        "{}.minisig",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    );
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("failed to list `{}`", dir.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| *n == base || n.starts_with(&format!("{base}.")))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let p = dir.join(n);
            std::fs::read_to_string(&p).with_context(|| format!("failed to read `{}`", p.display()))
        })
        .collect()
}
