//! Signed records beside an artifact in a registry. The registry has no referrers API
//! (Debian's docker-registry 2.8), so they live at a tag derived from the artifact's digest,
//! `sha256-<hex>.records` (cosign's convention), as one small OCI manifest whose layers are
//! the records. Adding a record (a promotion after the build) replaces that manifest with one
//! holding the old records and the new.

use std::collections::BTreeMap;

use silver_types::SignedRecord;

use crate::error::Error;
use crate::http::Registry;
use crate::layout::{Descriptor, ImageManifest};
use crate::reference::{Digest, Reference};

pub const RECORDS_TYPE: &str = "application/vnd.silver.records.v1";
pub const RECORD_TYPE: &str = "application/vnd.silver.record.v1+json";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// A record is a few hundred bytes; a signature, two lines.
const MAX_RECORD: u64 = 64 << 10;

/// The tag records of the artifact at `digest` live at.
pub fn records_tag(digest: &Digest) -> String {
    format!("sha256-{}.records", digest.hex())
}

/// The records kept beside `reference` (which names a digest); none when there are none.
pub async fn fetch(registry: &Registry, reference: &Reference) -> Result<Vec<SignedRecord>, Error> {
    let tagged = tagged(reference)?;
    let Some((bytes, _)) = registry.manifest_if_any(&tagged).await? else {
        return Ok(vec![]);
    };
    let image: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| Error::BadLayout {
        reference: tagged.to_string(),
        why: format!("its records manifest is not OCI JSON ({e})"),
    })?;
    let mut records = Vec::new();
    for layer in image.layers.iter().filter(|l| l.media_type == RECORD_TYPE) {
        let blob = registry
            .blob_bytes(&layer.digest, MAX_RECORD, "a record")
            .await?;
        let record: SignedRecord = serde_json::from_slice(&blob).map_err(|e| Error::BadLayout {
            reference: tagged.to_string(),
            why: format!("record {} is not a signed record ({e})", layer.digest),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Adds `new` to the records beside `reference`; returns how many it holds now.
pub async fn append(
    registry: &Registry,
    reference: &Reference,
    new: &[SignedRecord],
) -> Result<usize, Error> {
    let tagged = tagged(reference)?;
    let mut all = fetch(registry, reference).await?;
    for record in new {
        if !all.contains(record) {
            all.push(record.clone());
        }
    }
    let mut layers = Vec::new();
    for record in &all {
        let bytes = serde_json::to_vec(record).expect("a record serializes");
        layers.push(put_small(registry, RECORD_TYPE, bytes).await?);
    }
    let config = put_small(registry, EMPTY_TYPE, b"{}".to_vec()).await?;
    let image = ImageManifest {
        schema_version: 2,
        media_type: Some(crate::http::OCI_MANIFEST.into()),
        artifact_type: Some(RECORDS_TYPE.into()),
        config,
        layers,
        annotations: BTreeMap::new(),
    };
    let body = serde_json::to_vec(&image).expect("a manifest serializes");
    registry
        .put_manifest(tagged.tag.as_deref().unwrap_or_default(), &body)
        .await?;
    Ok(all.len())
}

async fn put_small(
    registry: &Registry,
    media_type: &str,
    bytes: Vec<u8>,
) -> Result<Descriptor, Error> {
    let digest = Digest::sha256(&bytes);
    if !registry.has_blob(&digest).await? {
        let body = bytes::Bytes::from(bytes.clone());
        registry
            .put_blob(&digest, bytes.len() as u64, || {
                Ok(reqwest::Body::from(body.clone()))
            })
            .await?;
    }
    Ok(Descriptor {
        media_type: media_type.into(),
        digest,
        size: bytes.len() as u64,
        annotations: BTreeMap::new(),
    })
}

fn tagged(reference: &Reference) -> Result<Reference, Error> {
    let digest = reference.digest.as_ref().ok_or_else(|| Error::NoDigest {
        reference: reference.to_string(),
    })?;
    Ok(Reference {
        tag: Some(records_tag(digest)),
        digest: None,
        ..reference.clone()
    })
}
