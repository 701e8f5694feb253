//! The SVG bar charts of `rpbench all`.

use std::fmt::Write as _;

use crate::measure::mib;
use crate::report::Row;
use crate::sets::Set;

const COLORS: [&str; 8] = [
    "#1f77b4", "#aec7e8", "#d62728", "#2ca02c", "#9467bd", "#7f7f7f", "#ff7f0e", "#8c564b",
];

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A grouped bar chart: one group per thread count, one bar per peer, y axis from zero.
fn svg_chart(
    title: &str,
    rows: &[Row],
    set: &Set,
    peers: &[String],
    value: impl Fn(&Row) -> f64,
) -> String {
    let threads = set.threads;
    let (w, h) = (760.0f64, 420.0f64);
    let (left, right, top, bottom) = (70.0, 150.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let vals: Vec<Vec<Option<f64>>> = threads
        .iter()
        .map(|&t| {
            peers
                .iter()
                .map(|p| {
                    rows.iter()
                        .find(|r| r.set == set.name && &r.peer == p && r.threads == t)
                        .map(&value)
                })
                .collect()
        })
        .collect();
    let vmax = vals
        .iter()
        .flatten()
        .flatten()
        .cloned()
        .fold(0.0f64, f64::max);
    let (step, top_v) = nice_axis(vmax);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        left + pw / 2.0,
        xml_escape(title)
    );
    // Y grid and labels.
    let mut v = 0.0;
    while v <= top_v + step * 0.01 {
        let y = top + ph - v / top_v * ph;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            y + 4.0,
            fmt_tick(v, step)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{:.1}" stroke="black"/><line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        top + ph,
        top + ph,
        left + pw,
        top + ph
    );
    // Bars.
    let gw = pw / threads.len() as f64;
    let bw = gw * 0.8 / peers.len() as f64;
    for (gi, &t) in threads.iter().enumerate() {
        let gx = left + gi as f64 * gw + gw * 0.1;
        for (pi, val) in vals[gi].iter().enumerate() {
            if let Some(val) = val {
                let bh = val / top_v * ph;
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {} threads: {:.2}</title></rect>"#,
                    gx + pi as f64 * bw,
                    top + ph - bh,
                    bw * 0.92,
                    bh,
                    COLORS[pi % COLORS.len()],
                    xml_escape(&peers[pi]),
                    t,
                    val
                );
            }
        }
        let label = if set.handoff {
            format!("{t}:1")
        } else {
            format!("{t} thread{}", if t == 1 { "" } else { "s" })
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            gx + gw * 0.4,
            top + ph + 18.0,
        );
    }
    // Legend.
    for (pi, p) in peers.iter().enumerate() {
        let y = top + 10.0 + pi as f64 * 20.0;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            left + pw + 15.0,
            y,
            COLORS[pi % COLORS.len()],
            left + pw + 32.0,
            y + 10.0,
            xml_escape(p)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A round tick step and axis top for values up to `vmax`.
fn nice_axis(vmax: f64) -> (f64, f64) {
    if vmax <= 0.0 {
        return (1.0, 5.0);
    }
    let raw = vmax / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (vmax / step).ceil() * step)
}

fn fmt_tick(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let decimals = (-step.log10().floor()) as usize + 1;
        format!("{v:.decimals$}")
    }
}

/// The charts of one set, by kind (`ops`, `rss` and for hand-off sets `idle`): speed (ops
/// per CPU second, or time for a hand-off set), peak RSS, and RSS after idle.
pub(crate) fn charts(set: &Set, rows: &[Row], peers: &[String]) -> Vec<(&'static str, String)> {
    let (speed_title, speed): (String, &dyn Fn(&Row) -> f64) = if set.handoff {
        (format!("{}: time (s)", set.name), &|r| r.wall_s)
    } else {
        (
            format!("{}: memory ops per CPU second (millions)", set.name),
            &|r| r.ops_cpu / 1e6,
        )
    };
    let ops = svg_chart(&speed_title, rows, set, peers, speed);
    let mem = svg_chart(
        &format!("{}: peak RSS (MiB)", set.name),
        rows,
        set,
        peers,
        |r| mib(r.peak),
    );
    let mut charts = vec![("ops", ops), ("rss", mem)];
    if set.handoff {
        charts.push((
            "idle",
            svg_chart(
                &format!("{}: RSS after frees and idle (MiB)", set.name),
                rows,
                set,
                peers,
                |r| mib(r.idle),
            ),
        ));
    }
    charts
}
