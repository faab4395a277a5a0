//! A chart of a run as plain SVG text: answers per second (top) and the main operation's
//! p50 and p99 latency (bottom), in one-second buckets, the warm-up shaded.

use crate::stats::TimelinePoint;
use std::fmt::Write;

/// Chart width in pixels.
const W: f64 = 860.0;
/// Height of one panel.
const PANEL_H: f64 = 170.0;
/// Left margin (axis labels).
const LEFT: f64 = 70.0;
/// Right margin.
const RIGHT: f64 = 20.0;
/// Top of the first panel.
const TOP: f64 = 40.0;
/// Gap between the panels.
const GAP: f64 = 50.0;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis top for values up to `v`: four steps of 1, 2, 2.5 or 5 times a power of ten.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let raw = v / 4.0;
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= raw)
        .unwrap_or(10.0 * p);
    step * 4.0
}

/// The time axis: bucket middles, warm-up length and total length in seconds.
struct Axis {
    /// Middle of each bucket, seconds.
    mid: Vec<f64>,
    /// Warm-up seconds.
    warm_s: f64,
    /// Seconds of the whole run.
    total_s: f64,
}

impl Axis {
    /// The x pixel of second `t`.
    fn x(&self, t: f64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * t / self.total_s.max(1e-9)
    }
}

/// One panel: frame, grid, y labels, warm-up shading, and `series` as polylines.
fn panel(
    out: &mut String,
    top: f64,
    xs: &Axis,
    y_label: &str,
    series: &[(&str, &str, Vec<Option<f64>>)],
) {
    let max = nice_max(
        series
            .iter()
            .flat_map(|(_, _, v)| v.iter().flatten())
            .fold(0.0, |a: f64, b| a.max(*b)),
    );
    let plot_w = W - LEFT - RIGHT;
    let y = |v: f64| top + PANEL_H * (1.0 - v / max);
    if xs.warm_s > 0.0 {
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top}" width="{:.1}" height="{PANEL_H}" fill="#eee"/>"##,
            xs.x(xs.warm_s) - LEFT
        );
    }
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ccc"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            fmt_num(v)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="14" y="{:.1}" font-size="12" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"##,
        top + PANEL_H / 2.0,
        top + PANEL_H / 2.0,
        esc(y_label)
    );
    for (i, (name, color, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter_map(|(t, v)| v.map(|v| format!("{:.1},{:.1}", xs.x(xs.mid[t]), y(v))))
            .collect();
        if !points.is_empty() {
            let _ = writeln!(
                out,
                r##"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
                points.join(" ")
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="{color}">{}</text>"##,
            LEFT + 10.0 + 110.0 * i as f64,
            top - 6.0,
            esc(name)
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w:.1}" height="{PANEL_H}" fill="none" stroke="#333"/>"##
    );
}

/// A number for an axis label.
fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{:.0}", v)
    } else if v >= 1.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

/// The SVG text of a run's chart; the first `warm_s` seconds were warm-up.
pub fn svg(title: &str, latency_of: &str, warm_s: f64, timeline: &[TimelinePoint]) -> String {
    let xs = Axis {
        mid: timeline
            .iter()
            .map(|p| p.t_s as f64 + p.span_s / 2.0)
            .collect(),
        warm_s,
        total_s: timeline.last().map_or(1.0, |p| p.t_s as f64 + p.span_s),
    };
    let h = TOP + 2.0 * PANEL_H + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif">"##
    );
    let _ = writeln!(out, r##"<rect width="{W}" height="{h}" fill="white"/>"##);
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"##,
        esc(title)
    );
    let rate: Vec<Option<f64>> = timeline.iter().map(|p| Some(p.rate)).collect();
    let errs: Vec<Option<f64>> = timeline
        .iter()
        .map(|p| Some(p.errors as f64 / p.span_s))
        .collect();
    panel(
        &mut out,
        TOP,
        &xs,
        "answers / s",
        &[
            ("answers/s", "#1f77b4", rate),
            ("errors/s", "#d62728", errs),
        ],
    );
    let p50: Vec<Option<f64>> = timeline.iter().map(|p| p.p50_ms).collect();
    let p99: Vec<Option<f64>> = timeline.iter().map(|p| p.p99_ms).collect();
    let lat_top = TOP + PANEL_H + GAP;
    panel(
        &mut out,
        lat_top,
        &xs,
        &format!("{latency_of} ms"),
        &[("p50", "#2ca02c", p50), ("p99", "#ff7f0e", p99)],
    );
    let axis_y = lat_top + PANEL_H + 16.0;
    let whole = xs.total_s.floor() as usize;
    let step = (whole / 10).max(1);
    for t in (0..=whole).step_by(step) {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{axis_y:.1}" font-size="11" text-anchor="middle">{t}</text>"##,
            xs.x(t as f64)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">seconds (1-second buckets; shaded: warm-up)</text>"##,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        axis_y + 18.0
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_bounds() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 4.0);
        assert_eq!(nice_max(26.4), 40.0);
        assert_eq!(nice_max(710.0), 800.0);
        assert_eq!(nice_max(10.0), 10.0);
    }

    #[test]
    fn draws_a_well_formed_svg() {
        let points: Vec<TimelinePoint> = (0..5)
            .map(|i| TimelinePoint {
                t_s: i,
                span_s: 1.0,
                requests: 100 * i,
                rate: 100.0 * i as f64,
                errors: 0,
                p50_ms: Some(1.0),
                p99_ms: if i == 0 { None } else { Some(4.0) },
                warmup: i < 1,
            })
            .collect();
        let s = svg("a <test>", "checkout", 1.0, &points);
        assert!(s.starts_with("<svg"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a &lt;test&gt;"));
        assert_eq!(s.matches("<polyline").count(), 4);
    }
}
