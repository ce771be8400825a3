//! `silver status [APP]`: a node's figures now with sparklines of the last hour, its apps, the
//! sizing verdict and the alerts; `--json` for scripts; `--open` for the status page, through a
//! signed link a browser can open without the token.

use silver_wire::api::{SeriesView, StatusView};

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this app's row and graphs.
    pub app: Option<String>,
    /// Hours of history (up to 24 at 10 s, beyond at 5 min).
    #[arg(long, default_value_t = 1)]
    pub hours: u64,
    /// Print a signed link to the status page (valid for --minutes), and open it in a browser
    /// where there is one.
    #[arg(long)]
    pub open: bool,
    /// How long the --open link stays valid.
    #[arg(long, default_value_t = 60, value_name = "MINUTES")]
    pub minutes: u64,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let client = args.node.connect()?;
    let rt = super::node::runtime()?;
    if args.open {
        let link = rt.block_on(client.status_link(args.minutes))?;
        let url = format!("{}{}", client.base_url(), link.path);
        crate::out!("{url}");
        open_browser(&url);
        if args.node.node.starts_with("ssh://") {
            // The link goes through this process's tunnel: it works while this runs.
            ui::status("Tunnel", "open while this runs; press Ctrl-C to close it");
            rt.block_on(tokio::signal::ctrl_c())?;
        }
        return Ok(());
    }
    let mut view = rt.block_on(client.status(args.hours))?;
    if let Some(app) = &args.app {
        view.apps.retain(|a| &a.app == app);
        view.series
            .retain(|k, _| k == "node" || k == &format!("app:{app}"));
        view.markers.retain(|m| &m.app == app);
        view.releases.retain(|r| &r.app == app);
        if view.apps.is_empty() {
            return Err(ui::hinted(
                format!("no app `{app}` runs on {}", client.url()),
                "`silver status` without an app lists those that do",
            ));
        }
    }
    if args.node.json {
        return super::common::print_json(&view);
    }
    print(&view);
    Ok(())
}

fn print(view: &StatusView) {
    crate::out!("{}  {}", view.node, view.verdict.line);
    let node = view.series.get("node");
    let row = |label: &str, field: &str, value: String| {
        let spark = node.map_or(String::new(), |s| sparkline(s, field));
        crate::out!("  {label:<18} {value:>12}  {spark}");
    };
    let c = |k: &str| view.current.get(k).copied().unwrap_or(f64::NAN);
    row(
        "cpu busy",
        "cpu_busy",
        format!("{:.0}%", c("cpu_busy") * 100.0),
    );
    row("load", "load1", format!("{:.2}", c("load1")));
    row(
        "memory available",
        "mem_available_bytes",
        format!("{} MiB", (c("mem_available_bytes") / 1048576.0) as i64),
    );
    row(
        "swap in",
        "swap_in_per_s",
        format!("{:.1}/s", c("swap_in_per_s")),
    );
    row(
        "disk free",
        "disk_free_bytes",
        format!("{:.1} GiB", c("disk_free_bytes") / 1073741824.0),
    );
    row(
        "network in",
        "net_rx_bytes_per_s",
        format!("{:.0} KiB/s", c("net_rx_bytes_per_s") / 1024.0),
    );
    for a in &view.apps {
        let f = |k: &str| a.figures.get(k).copied();
        let series = view.series.get(&format!("app:{}", a.app));
        let spark = |field: &str| series.map_or(String::new(), |s| sparkline(s, field));
        crate::out!(
            "{} ({}): {:.1} req/s, {:.1} 5xx/s, p95 {}, {} in flight, {} MiB",
            a.app,
            a.release,
            f("rps").unwrap_or(0.0),
            f("rps_5xx").unwrap_or(0.0),
            f("p95_ms").map_or("–".into(), |v| format!("{v:.0} ms")),
            f("in_flight").unwrap_or(0.0),
            (f("memory_bytes").unwrap_or(0.0) / 1048576.0) as i64,
        );
        crate::out!("  req/s {}", spark("rps"));
        crate::out!("  p95   {}", spark("p95_ms"));
    }
    for alert in &view.alerts {
        crate::out!("alert {} {}: {}", alert.name, alert.subject, alert.message);
    }
    if !view.markers.is_empty() {
        let last = view.markers.last().expect("not empty");
        crate::out!(
            "{} change(s) in the window; last: {} {} {} at {}",
            view.markers.len(),
            last.kind,
            last.app,
            last.what,
            silver_wire::api::utc(last.t)
        );
    }
}

/// The field over the window in at most 60 block characters (each the mean of its points).
fn sparkline(series: &SeriesView, field: &str) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let Some(i) = series.fields.iter().position(|f| f == field) else {
        return String::new();
    };
    let values = &series.values[i];
    if values.is_empty() {
        return String::new();
    }
    let per = values.len().div_ceil(60);
    let cells: Vec<Option<f64>> = values
        .chunks(per)
        .map(|c| {
            let v: Vec<f64> = c.iter().flatten().map(|v| *v as f64).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect();
    let max = cells.iter().flatten().copied().fold(0.0, f64::max);
    cells
        .iter()
        .map(|c| match c {
            None => ' ',
            Some(_) if max <= 0.0 => BLOCKS[0],
            Some(v) => BLOCKS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize],
        })
        .collect()
}

/// Opens `url` in the desktop's browser, if there is a desktop; says nothing otherwise.
fn open_browser(url: &str) {
    let desktop =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !desktop {
        return;
    }
    let _ = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
