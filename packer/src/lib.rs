//! The silver artifact: a content-addressed, relocatable, reproducible package of an app.
//!
//! `pack` turns an app directory into a `.silver` archive whose id is the BLAKE3 of its manifest;
//! `verify`, `unpack` and `inspect` read one back as hostile input. This crate has no network code.

// Errors carry the path, entry and reason they concern, which makes them large; they are built
// only on the way out of a failed operation, so their size costs nothing that matters.
#![allow(clippy::result_large_err)]
// The manifest's format is documented with real tab characters, as it is written.
#![allow(clippy::tabs_in_doc_comments)]

pub mod archive;
mod error;
pub mod limits;
pub mod manifest;
mod ordered;
mod pack;
pub mod path;
mod read;
pub mod relocate;
pub mod venv;
pub mod walk;

pub use error::{Error, Refusal};
pub use limits::Limits;
pub use manifest::{Entry, Hash, Id, Kind, Manifest};
pub use pack::{pack, PackConfig, PackReport};
pub use read::{
    read_manifest, read_with, staging_path, unpack, verify, ReadConfig, Verified, Visitor,
};
pub use walk::WalkConfig;

/// Progress of a long phase, in bytes. The binary draws bars; the library only counts.
pub trait Progress: Sync {
    fn start(&self, phase: &str, total_bytes: u64);
    fn advance(&self, bytes: u64);
    fn finish(&self);
    /// A line of what the far end is doing (a node's `update_fetch` output), shown as it comes.
    fn note(&self, _line: &str) {}
}

/// Progress that goes nowhere (tests, `--json` without a terminal).
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
