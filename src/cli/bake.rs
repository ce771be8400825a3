//! `silver bake`: a node image from a recipe, in cached steps, each shown with its time.

use std::path::PathBuf;

use anyhow::Context;

use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recipe, e.g. image-recipes/debian-bookworm.toml.
    #[arg(value_parser = super::common::absolute_path)]
    pub recipe: PathBuf,
    /// Where the outputs go [default: dist/<image name>].
    #[arg(short, long, value_name = "DIR")]
    #[arg(value_parser = super::common::absolute_path)]
    pub out: Option<PathBuf>,
    /// The step cache [default: $XDG_CACHE_HOME/silver/bake, else ~/.cache/silver/bake].
    #[arg(long, value_name = "DIR")]
    #[arg(value_parser = super::common::absolute_path)]
    pub cache: Option<PathBuf>,
    /// Say, for each step, why it was or was not reused.
    #[arg(long)]
    pub explain: bool,
    /// Bake again without the cache and check that the rootfs digest is the same.
    #[arg(long)]
    pub verify: bool,
    /// Print the image manifest (and the steps) as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let recipe = builder::Recipe::load(&args.recipe)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("dist").join(&recipe.image.name));
    let cache = match &args.cache {
        Some(c) => c.clone(),
        None => default_cache()?,
    };
    let config = builder::bake::BakeConfig {
        recipe_path: args.recipe.clone(),
        out_dir: out.clone(),
        cache_dir: cache.clone(),
        silver_binary: std::env::current_exe().context("cannot find the running silver binary")?,
        no_cache: false,
    };
    ui::status(
        "Baking",
        format!("{} from {}", recipe.image.name, args.recipe.display()),
    );
    let show = |s: &builder::bake::StepReport| {
        let verb = if s.reused { "Reused" } else { "Built" };
        ui::status(verb, format!("{} in {:.1} s", s.step, s.seconds));
        if args.explain {
            eprintln!("             {} (key {})", s.why, &s.key[..16]);
        }
    };
    let report = builder::bake::bake(&config, &show)
        .with_context(|| format!("failed to bake `{}`", args.recipe.display()))?;
    ui::status(
        "Baked",
        format!(
            "{} in {} (rootfs sha256 {})",
            recipe.image.name,
            out.display(),
            report.manifest.rootfs_sha256
        ),
    );
    if args.verify {
        let tmp =
            safefs::temp_dir("silver-verify-").context("failed to make a temporary directory")?;
        let verify = builder::bake::BakeConfig {
            out_dir: tmp.path().join("out"),
            cache_dir: tmp.path().join("cache"),
            no_cache: true,
            ..config
        };
        ui::status("Verifying", "by baking again without the cache");
        let again = builder::bake::bake(&verify, &show);
        drop(tmp);
        let again = again.context("the verification bake failed")?;
        let differ = differences(&report.manifest, &again.manifest);
        if !differ.is_empty() {
            let disks_only = again.manifest.rootfs_sha256 == report.manifest.rootfs_sha256;
            let message = format!("the image is not reproducible: {}", differ.join("; "));
            if disks_only {
                return Err(ui::hinted(message, "the root filesystem is reproducible; byte-identical disk images need mke2fs 1.47.1 or later (scripts/install-deps.sh installs it on Debian 12)"));
            }
            anyhow::bail!(message);
        }
        ui::status(
            "Verified",
            "the rebuild has the same rootfs digest and the same bytes in every output",
        );
    }
    if args.json {
        super::common::print_json(&report)?;
    }
    Ok(())
}

/// What differs between two bakes of one recipe: the rootfs digest, then each output's.
fn differences(
    first: &builder::bake::ImageManifest,
    second: &builder::bake::ImageManifest,
) -> Vec<String> {
    let mut differ = Vec::new();
    if first.rootfs_sha256 != second.rootfs_sha256 {
        differ.push(format!(
            "rootfs sha256 {} then {}",
            first.rootfs_sha256, second.rootfs_sha256
        ));
    }
    for (name, sha) in &first.outputs {
        let again = second.outputs.get(name).map_or("(missing)", String::as_str);
        if again != sha {
            differ.push(format!("{name} sha256 {sha} then {again}"));
        }
    }
    differ
}

fn default_cache() -> anyhow::Result<PathBuf> {
    super::common::xdg_dir(super::common::Xdg::Cache, "bake")
        .context("neither XDG_CACHE_HOME nor HOME is set; pass --cache DIR")
}
