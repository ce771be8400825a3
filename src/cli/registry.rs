//! Registry flags shared by push, pull and deploy, and finding a pushed id by its tag.

use anyhow::Context;
use silver_registry::{Reference, RegistryConfig};

use crate::ui;

/// How to reach registries, shared by push, pull and deploy.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// A registry (`host[:port]`) to reach over plain HTTP although it is not on loopback.
    /// Credentials come from `REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json` or
    /// `~/.docker/config.json`, never from the command line.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
}

impl RegistryArgs {
    pub fn resolve(&self) -> RegistryConfig {
        RegistryConfig {
            insecure: self.insecure.clone(),
            ..RegistryConfig::default()
        }
    }
}

/// The digest a `b3:` id was pushed under in `repo`, from its `b3-<id>` tag.
pub async fn find_id(
    repo: &Reference,
    id: &silver_types::IdPrefix,
    config: &RegistryConfig,
) -> anyhow::Result<Reference> {
    let Some(id) = id.full() else {
        return Err(ui::hinted(
            format!("`{id}` is a prefix: a registry is searched by the whole id"),
            "give all 64 hex digits, as `silver push --json` prints them",
        ));
    };
    let tagged = Reference {
        tag: Some(silver_registry::push::id_tag(&id)),
        digest: None,
        ..repo.clone()
    };
    let registry = silver_registry::Registry::connect(&tagged, config)?;
    let (_, digest) = registry.manifest(&tagged).await.with_context(|| {
        format!(
            "{id} was not found in {repo} (as tag {})",
            tagged.tag.as_deref().unwrap_or("")
        )
    })?;
    Ok(Reference {
        tag: None,
        ..repo.at(digest)
    })
}

/// Adds signed records beside an artifact in its registry; returns how many it holds.
pub async fn append_records(
    reference: &Reference,
    records: &[silver_types::SignedRecord],
    config: &RegistryConfig,
) -> anyhow::Result<usize> {
    let registry = silver_registry::Registry::connect(reference, config)?;
    silver_registry::records::append(&registry, reference, records)
        .await
        .with_context(|| format!("failed to keep records beside {reference}"))
}
