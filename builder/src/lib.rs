//! Node images from recipes (design §7). So far: the recipe format, parsed and checked, with
//! every error naming its field. Baking (mmdebstrap, outputs, the step cache) builds on it.

mod error;
pub mod recipe;

pub use error::Error;
pub use recipe::Recipe;
