//! The status page: server-rendered HTML and SVG, no script. Every graph carries the deploy
//! markers; the verdict, the alerts, each app's row and each release's before and after are
//! plain text a test can find.

use std::fmt::Write;

use silver_wire::api::{CertsView, Marker, SeriesView, StatusView};

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}table{border-collapse:collapse}\
td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}\
.verdict{padding:10px;border-radius:4px;background:#eef}.too-small{background:#fdd}.oversized{background:#ffd}\
.alert{color:#a00}.graphs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:12px;color:#555}\
svg.graph{background:#fafafa;border:1px solid #ddd}";

/// The whole page for `view`.
pub fn render(view: &StatusView, certs: &CertsView) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>silver: {node}</title>\
         <meta name=viewport content=\"width=device-width\"><style>{STYLE}</style></head><body>\
         <h1>{node}</h1><p class=\"verdict {class}\" id=verdict><b>Verdict:</b> {line}</p>",
        node = esc(&view.node),
        class = view.verdict.size.replace(' ', "-"),
        line = esc(&view.verdict.line),
    );
    alerts(&mut html, view);
    let t0 = view.t0();
    let t1 = view.now_unix;
    html.push_str("<h2>Node</h2><div class=graphs>");
    if let Some(node) = view.series.get("node") {
        for (title, fields, scale) in [
            ("CPU busy (%)", &["cpu_busy"][..], 100.0),
            ("Load (1 min)", &["load1"][..], 1.0),
            (
                "Memory available (MiB)",
                &["mem_available_bytes"][..],
                1.0 / 1048576.0,
            ),
            (
                "Swap (pages/s)",
                &["swap_in_per_s", "swap_out_per_s"][..],
                1.0,
            ),
            (
                "Disk free (GiB)",
                &["disk_free_bytes"][..],
                1.0 / 1073741824.0,
            ),
            (
                "Disk I/O (KiB/s)",
                &["disk_read_bytes_per_s", "disk_write_bytes_per_s"][..],
                1.0 / 1024.0,
            ),
            (
                "Network (KiB/s)",
                &["net_rx_bytes_per_s", "net_tx_bytes_per_s"][..],
                1.0 / 1024.0,
            ),
        ] {
            graph(
                &mut html,
                title,
                node,
                fields,
                scale,
                &view.markers,
                None,
                (t0, t1),
            );
        }
    }
    html.push_str("</div>");
    apps(&mut html, view, (t0, t1));
    releases(&mut html, view);
    certificates(&mut html, certs);
    html.push_str("</body></html>");
    html
}

trait Window {
    fn t0(&self) -> u64;
}

impl Window for StatusView {
    fn t0(&self) -> u64 {
        let first = self
            .series
            .values()
            .filter_map(|s| s.t.first())
            .min()
            .copied();
        first
            .unwrap_or(self.now_unix.saturating_sub(3600))
            .min(self.now_unix.saturating_sub(600))
    }
}

fn alerts(html: &mut String, view: &StatusView) {
    if view.alerts.is_empty() {
        html.push_str("<p id=alerts>No alerts.</p>");
        return;
    }
    html.push_str("<ul id=alerts>");
    for a in &view.alerts {
        let _ = write!(
            html,
            "<li class=alert><b>{}</b> {}: {}</li>",
            esc(&a.name),
            esc(&a.subject),
            esc(&a.message)
        );
    }
    html.push_str("</ul>");
}

fn apps(html: &mut String, view: &StatusView, window: (u64, u64)) {
    html.push_str("<h2>Apps</h2><table id=apps><tr><th>app</th><th>release</th><th>req/s</th><th>5xx/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>in flight</th><th>processes</th><th>memory MiB</th><th>restarts</th><th>deadline ends</th></tr>");
    for a in &view.apps {
        let f = |k: &str, scale: f64| {
            a.figures
                .get(k)
                .map_or("–".to_string(), |v| format!("{:.1}", v * scale))
        };
        let _ = write!(
            html,
            "<tr class=app data-app=\"{app}\"><td>{app}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.release), f("rps", 1.0), f("rps_5xx", 1.0), f("p50_ms", 1.0), f("p95_ms", 1.0), f("p99_ms", 1.0),
            f("in_flight", 1.0), f("processes", 1.0), f("memory_bytes", 1.0 / 1048576.0), f("restarts", 1.0), f("deadline_ends", 1.0),
            app = esc(&a.app),
        );
    }
    html.push_str("</table>");
    for a in &view.apps {
        let Some(s) = view.series.get(&format!("app:{}", a.app)) else {
            continue;
        };
        let _ = write!(html, "<h2>{}</h2><div class=graphs>", esc(&a.app));
        let only = Some(a.app.as_str());
        graph(
            html,
            "Requests/s by status",
            s,
            &["rps_2xx", "rps_3xx", "rps_4xx", "rps_5xx"],
            1.0,
            &view.markers,
            only,
            window,
        );
        graph(
            html,
            "Latency (ms): p50, p95, p99",
            s,
            &["p50_ms", "p95_ms", "p99_ms"],
            1.0,
            &view.markers,
            only,
            window,
        );
        graph(
            html,
            "Memory (MiB)",
            s,
            &["memory_bytes"],
            1.0 / 1048576.0,
            &view.markers,
            only,
            window,
        );
        graph(
            html,
            "In flight",
            s,
            &["in_flight"],
            1.0,
            &view.markers,
            only,
            window,
        );
        html.push_str("</div>");
    }
}

fn releases(html: &mut String, view: &StatusView) {
    html.push_str("<h2>Releases: before and after</h2><table id=releases><tr><th>app</th><th>release</th><th>live since</th><th>window</th><th>5xx before</th><th>5xx after</th><th>p95 before</th><th>p95 after</th></tr>");
    let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.2}%", v * 100.0));
    let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0} ms"));
    for r in &view.releases {
        let _ = write!(
            html,
            "<tr class=release><td>{}</td><td>{}</td><td>{}</td><td>{} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.app), esc(&r.what), silver_wire::api::utc(r.t), r.window_secs,
            pct(r.before.error_rate), pct(r.after.error_rate), ms(r.before.p95_ms), ms(r.after.p95_ms),
        );
    }
    html.push_str("</table>");
}

fn certificates(html: &mut String, certs: &CertsView) {
    html.push_str("<h2>Certificates</h2><table id=certs><tr><th>host</th><th>source</th><th>ends</th><th>error</th></tr>");
    for c in &certs.hosts {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=alert>{}</td></tr>",
            esc(&c.host),
            esc(c.source.as_deref().unwrap_or("none")),
            c.not_after_unix.map_or("–".into(), silver_wire::api::utc),
            esc(c.error.as_deref().unwrap_or("")),
        );
    }
    html.push_str("</table>");
}

const COLORS: [&str; 4] = ["#2563eb", "#16a34a", "#d97706", "#dc2626"];
const W: f64 = 520.0;
const H: f64 = 140.0;

/// One line graph of `fields` of `series` over `window`, with every marker (of `app` only, if
/// given) as a vertical line. `data-points` counts the points drawn.
#[allow(clippy::too_many_arguments)]
fn graph(
    html: &mut String,
    title: &str,
    series: &SeriesView,
    fields: &[&str],
    scale: f64,
    markers: &[Marker],
    app: Option<&str>,
    (t0, t1): (u64, u64),
) {
    let span = (t1.saturating_sub(t0)).max(1) as f64;
    let x = |t: u64| (t.saturating_sub(t0)) as f64 / span * W;
    let columns: Vec<(usize, &str)> = fields
        .iter()
        .filter_map(|f| series.fields.iter().position(|g| g == f).map(|i| (i, *f)))
        .collect();
    let max = columns
        .iter()
        .flat_map(|(i, _)| series.values[*i].iter().flatten())
        .map(|v| *v as f64 * scale)
        .fold(0.0, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let y = |v: f64| H - (v * scale / top * H);
    let mut points = 0;
    let mut body = String::new();
    for (n, (i, field)) in columns.iter().enumerate() {
        // A gap (no value) ends one polyline and starts the next.
        let mut line = Vec::new();
        let flush = |line: &mut Vec<String>, body: &mut String| {
            if !line.is_empty() {
                let _ = write!(body, "<polyline fill=none stroke=\"{}\" stroke-width=1.5 points=\"{}\"><title>{field}</title></polyline>", COLORS[n % 4], line.join(" "));
                line.clear();
            }
        };
        for (t, v) in series.t.iter().zip(&series.values[*i]) {
            match v {
                Some(v) => {
                    points += 1;
                    line.push(format!("{:.1},{:.1}", x(*t), y(*v as f64)));
                }
                None => flush(&mut line, &mut body),
            }
        }
        flush(&mut line, &mut body);
    }
    let mut marks = 0;
    for m in markers
        .iter()
        .filter(|m| app.is_none_or(|a| a == m.app) && m.t >= t0 && m.t <= t1)
    {
        marks += 1;
        let _ = write!(
            body,
            "<line class=marker x1=\"{x:.1}\" x2=\"{x:.1}\" y1=0 y2=\"{H}\" stroke=\"{}\" stroke-dasharray=\"4 3\"><title>{} {} {}{}</title></line>",
            if m.ok { "#7c3aed" } else { "#dc2626" },
            esc(&m.kind), esc(&m.app), esc(&m.what), if m.ok { "" } else { " (failed)" },
            x = x(m.t),
        );
    }
    let legend: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(n, (_, f))| format!("<span style=\"color:{}\">{}</span>", COLORS[n % 4], esc(f)))
        .collect();
    let _ = write!(
        html,
        "<figure><svg class=graph data-points=\"{points}\" data-markers=\"{marks}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=img aria-label=\"{t}\">{body}<text x=4 y=12 font-size=10 fill=#555>{top:.1}</text><text x=4 y=\"{}\" font-size=10 fill=#555>{}</text><text x=\"{}\" y=\"{}\" font-size=10 fill=#555 text-anchor=end>{}</text></svg><figcaption>{t} · {}</figcaption></figure>",
        H - 4.0,
        clock(t0),
        W - 4.0,
        H - 4.0,
        clock(t1),
        legend.join(" "),
        t = esc(title),
        top = top,
    );
}

/// `HH:MM` UTC, for a graph's ends.
fn clock(t: u64) -> String {
    let day = t % 86_400;
    format!("{:02}:{:02} UTC", day / 3600, day % 3600 / 60)
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
