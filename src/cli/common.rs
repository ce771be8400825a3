//! Helpers every subcommand shares: XDG directories, absolute path flags, JSON on stdout.

/// Where silver keeps things of one kind, XDG style: `$XDG_CACHE_HOME/silver/<sub>` (else
/// `~/.cache/silver/<sub>`) for caches, `$XDG_DATA_HOME/silver/<sub>` (else
/// `~/.local/share/silver/<sub>`) for data. None when neither variable nor HOME is set.
pub fn xdg_dir(kind: Xdg, sub: &str) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let (var, fallback) = match kind {
        Xdg::Cache => ("XDG_CACHE_HOME", ".cache"),
        Xdg::Data => ("XDG_DATA_HOME", ".local/share"),
    };
    let base = std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(fallback)))?;
    Some(base.join("silver").join(sub))
}

#[derive(Debug, Clone, Copy)]
pub enum Xdg {
    Cache,
    #[cfg_attr(not(feature = "bake"), allow(dead_code))]
    Data,
}

/// Every path flag is made absolute where it enters: the agent hands paths to processes that
/// run elsewhere (gunicorn in a release directory), where a relative one means something else.
pub fn absolute_path(given: &str) -> Result<std::path::PathBuf, String> {
    if given.is_empty() {
        return Err("an empty path".into());
    }
    std::path::absolute(given).map_err(|e| format!("cannot make `{given}` absolute: {e}"))
}

/// Prints a value as one line of JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    crate::out!("{}", serde_json::to_string(value)?);
    Ok(())
}
