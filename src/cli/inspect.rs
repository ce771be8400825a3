//! `silver inspect`: what an artifact is and holds. It reads the whole archive, so what it shows is verified.

use std::path::PathBuf;

use anyhow::Context;
use packer::Kind;

use super::limits::ReadArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One or more artifacts.
    #[arg(required = true)]
    #[arg(value_parser = super::common::absolute_path)]
    pub archives: Vec<PathBuf>,
    /// Print one JSON object per artifact, one per line, with every entry.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.read.config(false);
    for (i, archive) in args.archives.iter().enumerate() {
        let v = packer::verify(archive, &config)
            .with_context(|| format!("cannot inspect `{}`", archive.display()))?;
        if args.json {
            super::common::print_json(&v)?;
            continue;
        }
        if i > 0 {
            crate::out!();
        }
        if args.archives.len() > 1 {
            crate::out!("artifact  {}", archive.display());
        }
        show(&v);
    }
    Ok(())
}

fn show(v: &packer::Verified) {
    let count = |f: fn(&Kind) -> bool| v.entries.iter().filter(|e| f(&e.kind)).count();
    crate::out!("format    {}", v.format);
    crate::out!(
        "app       {}",
        v.app.as_deref().unwrap_or("(app.ini names none)")
    );
    crate::out!("id        {}", v.id);
    crate::out!(
        "archive   {} bytes, sha256 {}",
        v.archive_bytes,
        v.archive_sha256
    );
    crate::out!("content   {} bytes in {} files", v.content_bytes, v.files);
    let links = count(|k| matches!(k, Kind::Link { .. }));
    let dirs = count(|k| matches!(k, Kind::Dir));
    crate::out!(
        "entries   {} ({links} symlinks, {dirs} empty directories)",
        v.entries.len()
    );
    crate::out!("fixups    {}", v.fixups.len());
    for (path, kind) in &v.fixups {
        crate::out!("  {kind:<18} {path}");
    }
    crate::out!();
    for e in &v.entries {
        match &e.kind {
            Kind::Dir => crate::out!("dir   0755 {:>10}  {}/", "-", e.path),
            Kind::File { size, .. } => crate::out!("file  0644 {size:>10}  {}", e.path),
            Kind::Exec { size, .. } => crate::out!("exec  0755 {size:>10}  {}", e.path),
            Kind::Link { target } => crate::out!("link  0777 {:>10}  {} -> {target}", "-", e.path),
        }
    }
}
