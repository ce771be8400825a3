//! The one trait every crate's error implements for the CLI.

/// What every crate's error offers the CLI, which asks this trait instead of knowing each
/// error's variants: a hint, printed on its own line under the error, and whether the error
/// refused an artifact (exit code 3).
pub trait Hint: std::error::Error {
    /// A one-line suggestion of what to do; None when the message says it all.
    fn hint(&self) -> Option<String>;
    /// An artifact was refused as hostile or damaged, or is not the one named.
    fn refused(&self) -> bool {
        false
    }
}
