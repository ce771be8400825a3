//! `silver inspect`: what an artifact is and holds. It reads the whole archive, so what it shows is verified.

use std::path::PathBuf;

use anyhow::Context;
use packer::Kind;

use super::limits::LimitArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub archive: PathBuf,
    /// Print one JSON object with every entry.
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
    let v = packer::verify(&args.archive, &config)
        .with_context(|| format!("cannot inspect `{}`", args.archive.display()))?;
    if args.json {
        return super::print_json(&v);
    }
    let count = |f: fn(&Kind) -> bool| v.entries.iter().filter(|e| f(&e.kind)).count();
    println!("format    {}", v.format);
    println!(
        "app       {}",
        v.app.as_deref().unwrap_or("(app.ini names none)")
    );
    println!("id        {}", v.id);
    println!(
        "archive   {} bytes, sha256 {}",
        v.archive_bytes, v.archive_sha256
    );
    println!("content   {} bytes in {} files", v.content_bytes, v.files);
    println!(
        "entries   {} ({} symlinks, {} empty directories)",
        v.entries.len(),
        count(|k| matches!(k, Kind::Link { .. })),
        count(|k| matches!(k, Kind::Dir))
    );
    println!("fixups    {}", v.fixups.len());
    for (path, kind) in &v.fixups {
        println!("  {kind:<18} {path}");
    }
    println!();
    for e in &v.entries {
        match &e.kind {
            Kind::Dir => println!("dir   0755 {:>10}  {}/", "-", e.path),
            Kind::File { size, .. } => println!("file  0644 {size:>10}  {}", e.path),
            Kind::Exec { size, .. } => println!("exec  0755 {size:>10}  {}", e.path),
            Kind::Link { target } => println!("link  0777 {:>10}  {} -> {target}", "-", e.path),
        }
    }
    Ok(())
}
