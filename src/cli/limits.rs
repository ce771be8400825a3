//! Flags shared by every command that reads an artifact: the expected id and the reading limits.

use packer::Limits;

#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Most entries an artifact may have [default: 1000000].
    #[arg(long, value_name = "N")]
    pub max_entries: Option<u64>,
    /// Most content bytes an artifact may hold [default: 17179869184 (16 GiB)].
    #[arg(long, value_name = "BYTES")]
    pub max_total_bytes: Option<u64>,
    /// Longest path or symlink target, in bytes [default: 1024].
    #[arg(long, value_name = "BYTES")]
    pub max_path_bytes: Option<usize>,
    /// Deepest path, in components [default: 64].
    #[arg(long, value_name = "N")]
    pub max_path_depth: Option<usize>,
    /// Largest zstd window, as a power of two [default: 27 (128 MiB)].
    #[arg(long, value_name = "LOG2")]
    pub max_window_log: Option<u32>,
    /// Also allow absolute symlinks under this prefix (repeatable; `*` matches one component).
    #[arg(long = "system-prefix", value_name = "DIR")]
    pub system_prefixes: Vec<String>,
}

impl LimitArgs {
    pub fn resolve(&self) -> Limits {
        let mut limits = Limits::default();
        if let Some(n) = self.max_entries {
            limits.max_entries = n;
        }
        if let Some(n) = self.max_total_bytes {
            limits.max_total_bytes = n;
        }
        if let Some(n) = self.max_path_bytes {
            limits.max_path_bytes = n;
        }
        if let Some(n) = self.max_path_depth {
            limits.max_path_depth = n;
        }
        if let Some(n) = self.max_window_log {
            limits.max_window_log = n;
        }
        limits.system_prefixes.extend(
            self.system_prefixes
                .iter()
                .map(|p| format!("{}/", p.trim_end_matches('/'))),
        );
        limits
    }
}

/// `--id` and the limits, resolved into the library's `ReadConfig`.
#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    /// The id the artifact must have (`b3:<hex>`, or at least its first 12 hex digits).
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl ReadArgs {
    /// `durable` fsyncs what unpack writes: wanted for releases, pointless for a check.
    pub fn config(&self, durable: bool) -> packer::ReadConfig {
        packer::ReadConfig {
            limits: self.limits.resolve(),
            expected_id: self.id.clone(),
            durable,
        }
    }
}
