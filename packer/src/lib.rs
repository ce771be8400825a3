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
mod progress;
mod read;
pub mod relocate;
pub mod venv;
pub mod walk;

pub use error::{Error, Refusal};
pub use limits::Limits;
pub use manifest::{Entry, Hash, Id, Kind, Manifest};
pub use pack::{pack, write_archive, PackConfig, PackReport};
pub use progress::{NoProgress, Progress};
pub use read::{
    read_manifest, read_with, staging_path, unpack, verify, ReadConfig, Verified, Visitor,
};
pub use walk::WalkConfig;
