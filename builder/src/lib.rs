//! Node images from recipes (design §7): the recipe format (`recipe`), checked field by field,
//! and baking in cached steps (`bake`).

pub mod bake;
mod error;
pub mod recipe;
pub mod vm;

pub use error::Error;
pub use recipe::Recipe;
