//! `edgespec bench --plot FILE.svg`: the report drawn as a small hand-written SVG (no plotting
//! dependency). With energy: the headline domain's power over time with the idle baseline and
//! each strategy's windows shaded (prefill stretches darker), and decode tokens/J per strategy.
//! Without: decode tokens/s per strategy and the reason energy is unavailable.

use std::fmt::Write;

use super::BenchReport;

const WIDTH: f64 = 900.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const PALETTE: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// A "nice" axis maximum at or above `x`: 1, 2 or 5 times a power of ten.
fn nice_max(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|v| *v >= x).unwrap_or(10.0 * p)
}

/// Horizontal bars: `(label, value, caption, colour)`, starting at `top`; returns the height used.
fn bars(s: &mut String, top: f64, title: &str, rows: &[(String, f64, String, &str)]) -> f64 {
    let row_h = 26.0;
    let max = nice_max(rows.iter().map(|r| r.1).fold(0.0, f64::max));
    // Room on the right for a caption of about 75 characters.
    let plot_w = WIDTH - LEFT - RIGHT - 480.0;
    let _ = writeln!(s, r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text>"#, top + 14.0, esc(title));
    for (i, (label, v, caption, c)) in rows.iter().enumerate() {
        let y = top + 24.0 + i as f64 * row_h;
        let w = if max > 0.0 { (v / max * plot_w).max(0.0) } else { 0.0 };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{LEFT}" y="{y:.1}" width="{w:.1}" height="18" fill="{c}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT - 6.0,
            y + 13.0,
            esc(label),
            LEFT + w + 6.0,
            y + 13.0,
            esc(caption)
        );
    }
    24.0 + rows.len() as f64 * row_h + 10.0
}

/// The report as an SVG document.
pub fn svg(report: &BenchReport) -> String {
    let mut body = String::new();
    let mut y = 10.0;
    let e = &report.energy;
    let strategies: Vec<&'static str> = {
        let mut v: Vec<&'static str> = Vec::new();
        for p in &report.prompts {
            for r in &p.strategies {
                if !v.contains(&r.strategy) {
                    v.push(r.strategy);
                }
            }
        }
        v
    };
    let colour_of = |name: &str| colour(strategies.iter().position(|s| *s == name).unwrap_or(0));
    let _ = writeln!(
        body,
        r#"<text x="{LEFT}" y="{:.1}" font-size="15" font-weight="bold">edgespec bench: {} ({} threads, kernels {})</text>"#,
        y + 14.0,
        esc(report.model.rsplit('/').next().unwrap_or(&report.model)),
        report.threads,
        report.machine.kernels
    );
    y += 30.0;
    if e.available && !e.trace.is_empty() {
        let source = format!(
            "{} `{}` [{}, {}]{}",
            e.meter.as_deref().unwrap_or("?"),
            e.power_source.as_deref().unwrap_or("?"),
            e.scope.as_deref().unwrap_or("?"),
            e.power_provenance.as_deref().unwrap_or("?"),
            if e.estimate { " ESTIMATE" } else { "" }
        );
        let _ = writeln!(
            body,
            r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">power over time: {}</text>"#,
            y + 14.0,
            esc(&source)
        );
        y += 24.0;
        let h = 240.0;
        let plot_w = WIDTH - LEFT - RIGHT;
        let t0 = e.trace.first().map_or(0.0, |p| p.start_s).min(e.windows.first().map_or(0.0, |w| w.start_s));
        let t1 = e.trace.last().map_or(1.0, |p| p.end_s).max(e.windows.last().map_or(0.0, |w| w.end_s));
        let span = (t1 - t0).max(1e-9);
        let w_max = nice_max(e.trace.iter().map(|p| p.watts).fold(0.0, f64::max) * 1.05);
        let x = |t: f64| LEFT + (t - t0) / span * plot_w;
        let yv = |w: f64| y + h - (w / w_max).clamp(0.0, 1.0) * h;
        for win in &e.windows {
            let c = if win.label == "idle" { "#bbbbbb" } else { colour_of(&win.label) };
            let _ = writeln!(
                body,
                r#"<rect x="{:.2}" y="{y:.1}" width="{:.2}" height="{h}" fill="{c}" fill-opacity="0.18"/>"#,
                x(win.start_s),
                (x(win.end_s) - x(win.start_s)).max(0.5)
            );
            for (a, b) in &win.prefill {
                let _ = writeln!(
                    body,
                    r#"<rect x="{:.2}" y="{y:.1}" width="{:.2}" height="{h}" fill="{c}" fill-opacity="0.35"/>"#,
                    x(*a),
                    (x(*b) - x(*a)).max(0.3)
                );
            }
            let label = match win.rep {
                Some(r) => format!("{} #{r}", win.label),
                None => win.label.clone(),
            };
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                x(win.start_s) + 2.0,
                y + 11.0,
                esc(&label)
            );
        }
        let mut pts = String::new();
        for p in &e.trace {
            let _ =
                write!(pts, "{:.2},{:.2} {:.2},{:.2} ", x(p.start_s), yv(p.watts), x(p.end_s), yv(p.watts));
        }
        let _ = writeln!(
            body,
            r##"<polyline points="{}" fill="none" stroke="#222" stroke-width="1"/>"##,
            pts.trim_end()
        );
        if let Some(idle) = e.idle.as_ref().and_then(|i| i.average_w) {
            let _ = writeln!(
                body,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.2}" y2="{:.2}" stroke="#888" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">idle {idle:.2} W</text>"##,
                LEFT + plot_w,
                yv(idle),
                yv(idle),
                LEFT + plot_w,
                yv(idle) - 3.0
            );
        }
        // Axes.
        let _ = writeln!(
            body,
            r##"<rect x="{LEFT}" y="{y:.1}" width="{plot_w}" height="{h}" fill="none" stroke="#444"/><text x="{:.1}" y="{:.1}" text-anchor="end">{w_max} W</text><text x="{:.1}" y="{:.1}" text-anchor="end">0</text><text x="{LEFT}" y="{:.1}">0 s</text><text x="{:.1}" y="{:.1}" text-anchor="end">{:.1} s</text>"##,
            LEFT - 6.0,
            y + 10.0,
            LEFT - 6.0,
            y + h,
            y + h + 16.0,
            LEFT + plot_w,
            y + h + 16.0,
            span
        );
        y += h + 30.0;
        let mut rows = Vec::new();
        for st in &e.strategies {
            if let Some(d) = st.phases.iter().find(|p| p.phase == "decode") {
                let caption = format!(
                    "{} tokens/J ({} J/token; above idle {} tokens/J){}",
                    d.tokens_per_joule.map_or("-".into(), |v| format!("{v:.2}")),
                    d.joules_per_token.map_or("-".into(), |v| format!("{v:.4}")),
                    d.above_idle_tokens_per_joule.map_or("-".into(), |v| format!("{v:.2}")),
                    if d.within_idle_noise > 0 { ", within idle noise" } else { "" }
                );
                rows.push((
                    st.strategy.to_string(),
                    d.tokens_per_joule.unwrap_or(0.0),
                    caption,
                    colour_of(st.strategy),
                ));
            }
        }
        y += bars(&mut body, y, &format!("decode tokens per joule [{}]", source), &rows);
    } else {
        let mut rows = Vec::new();
        for &name in &strategies {
            let tps: Vec<f64> = report
                .prompts
                .iter()
                .flat_map(|p| p.strategies.iter().filter(|r| r.strategy == name))
                .map(|r| r.decode_tokens_per_s)
                .collect();
            let m = super::median(&tps);
            rows.push((name.to_string(), m, format!("{m:.1} tok/s (median over prompts)"), colour_of(name)));
        }
        y += bars(&mut body, y, "decode tokens per second", &rows);
        let why = e.unavailable_reason.as_deref().unwrap_or("no trace recorded");
        let _ = writeln!(
            body,
            r##"<text x="{LEFT}" y="{:.1}" fill="#a00">energy: unavailable ({})</text>"##,
            y + 14.0,
            esc(why)
        );
        y += 24.0;
    }
    let _ = writeln!(
        body,
        r##"<text x="{LEFT}" y="{:.1}" font-size="10" fill="#555">{}</text>"##,
        y + 12.0,
        esc(&report.machine.describe())
    );
    y += 24.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{y:.0}\" viewBox=\"0 0 {WIDTH} {y:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_and_escaping() {
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(0.012), 0.02);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(esc("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
