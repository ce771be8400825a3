//! Node images from recipes (design §7): the recipe format (`recipe`), checked field by field,
//! the package set it resolves to (`resolve`), baking in cached steps (`bake`) and booting the
//! result in QEMU (`vm`).

pub mod bake;
mod error;
pub mod recipe;
pub mod resolve;
pub mod vm;

pub use error::Error;
pub use recipe::Recipe;
