//! Human-facing output on stderr: styled messages, hints, progress bars, logging setup.
//! Colors follow `NO_COLOR` and drop when stderr is not a terminal (anstream does both).

use std::process::ExitCode;
use std::sync::Mutex;

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub const ERROR: Style = AnsiColor::Red.on_default().bold();
pub const WARN: Style = AnsiColor::Yellow.on_default().bold();
pub const HINT: Style = AnsiColor::Cyan.on_default().bold();
pub const OK: Style = AnsiColor::Green.on_default().bold();
pub const DIM: Style = Style::new().dimmed();

/// Exit code for an artifact that was refused or failed verification.
pub const EXIT_REFUSED: u8 = 3;

/// `SILVER_LOG` (an env-filter directive) wins; `-v` turns on debug for silver's crates.
pub fn init_logging(verbose: u8, quiet: &str) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => quiet,
        1 => "info,packer=debug,silver_client=debug,silver_node=debug,silver_runtime=debug,builder=debug,silver=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("SILVER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never)
        .try_init();
}

/// Writes one line of data to stdout. A reader that went away (`silver inspect | head`) ends
/// the command quietly with success, as it would have had the reader wanted more.
pub fn out_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{args}").and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// `println!` for data on stdout, through `out_line`.
#[macro_export]
macro_rules! out {
    () => { $crate::ui::out_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::ui::out_line(format_args!($($arg)*)) };
}

/// `1 file`, `2 files`: a count with its noun, singular or plural.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A status line: `   Packed myapp …`, cargo style.
pub fn status(verb: &str, message: impl std::fmt::Display) {
    anstream::eprintln!("{OK}{verb:>12}{OK:#} {message}");
}

pub fn warn(message: impl std::fmt::Display) {
    anstream::eprintln!("{WARN}warning{WARN:#}: {message}");
}

/// A message of the binary's own and what to do about it: shown as the error, and the hint on
/// its own line (never `\nhint:` inside a message, which would skip the hint's style).
#[derive(Debug)]
pub struct Hinted {
    message: String,
    hint: String,
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

impl silver_types::Hint for Hinted {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}

/// An error of the binary's own, with its hint.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
    })
}

/// A warning and, on its own line, what to do.
#[cfg_attr(not(feature = "node"), allow(dead_code))]
pub fn warn_with_hint(message: impl std::fmt::Display, hint: &str) {
    warn(message);
    print_hint(hint);
}

/// Each line of `hint` on its own `hint:` line.
fn print_hint(hint: &str) {
    for line in hint.lines() {
        anstream::eprintln!("{HINT}hint{HINT:#}: {line}");
    }
}

/// Prints an error with its causes and, on its own line, the hint; returns the exit code.
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    anstream::eprintln!("{ERROR}error{ERROR:#}: {err}");
    for cause in err.chain().skip(1) {
        anstream::eprintln!("  {DIM}caused by:{DIM:#} {cause}");
    }
    let hinted = || err.chain().filter_map(as_hint);
    if let Some(hint) = hinted().find_map(|e| e.hint()) {
        print_hint(&hint);
    }
    let refused = hinted().any(|e| e.refused());
    ExitCode::from(if refused { EXIT_REFUSED } else { 1 })
}

/// A library error of silver's, as the trait they all implement: the one place that lists them.
fn as_hint<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e dyn silver_types::Hint> {
    type Known =
        for<'a> fn(&'a (dyn std::error::Error + 'static)) -> Option<&'a dyn silver_types::Hint>;
    fn try_as<'a, E: silver_types::Hint + 'static>(
        e: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a dyn silver_types::Hint> {
        e.downcast_ref::<E>().map(|e| e as &dyn silver_types::Hint)
    }
    let known: &[Known] = &[
        try_as::<Hinted>,
        try_as::<silver_client::Error>,
        try_as::<silver_registry::Error>,
        try_as::<silver_trust::Error>,
        #[cfg(feature = "node")]
        try_as::<silver_node::Error>,
        #[cfg(feature = "node")]
        try_as::<silver_runtime::Error>,
        try_as::<packer::Error>,
        try_as::<silver_types::Error>,
        #[cfg(feature = "bake")]
        try_as::<builder::Error>,
    ];
    known.iter().find_map(|f| f(e))
}

/// A byte-counting progress bar for the library's phases; invisible when stderr is not a terminal.
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
    hidden: bool,
}

impl Bar {
    pub fn new(hidden: bool) -> Bar {
        Bar {
            bar: Mutex::new(None),
            hidden,
        }
    }
}

impl packer::Progress for Bar {
    fn start(&self, phase: &str, total_bytes: u64) {
        let target = if self.hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        // A total of 0 means "not known yet": show bytes and rate without a bar.
        let (length, template) = match total_bytes {
            0 => (
                None,
                "{prefix:>12.cyan.bold} {spinner} {bytes} {bytes_per_sec}",
            ),
            n => (
                Some(n),
                "{prefix:>12.cyan.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ),
        };
        let bar = ProgressBar::with_draw_target(length, target);
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(phase.to_string());
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }
    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            bar.inc(bytes);
        }
    }
    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }

    /// The node's `update_fetch` output, as it comes, whether or not a bar shows.
    fn note(&self, line: &str) {
        match &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(bar) => bar.suspend(|| status("Update", line)),
            None => status("Update", line),
        }
    }
}

/// A spinner on stderr for work of unknown length; hidden when stderr is not a terminal.
pub fn spinner(verb: &str, what: &str) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{prefix:>12.cyan.bold} {spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_prefix(verb.to_string());
    bar.set_message(what.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// `1.2 MiB`, for humans only (JSON carries exact byte counts).
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Unix seconds as `2026-11-22 05:13:14 UTC`.
pub fn utc(secs: u64) -> String {
    silver_wire::api::utc(secs)
}
