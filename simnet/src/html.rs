//! `report.html`: one self-contained page with SVG plots drawn by `plotters` (latency over
//! time and throughput over time with fault windows shaded, latency histogram, per-cosigner
//! participation), the summary and the invariants.
//!
//! Must never: load anything from the network (no scripts, no external CSS or fonts), or
//! plot a value that is not in the report.

use std::collections::BTreeMap;
use std::fmt::Write;

use plotters::prelude::*;

use crate::report::{percentiles, Percentiles, PointOutcome, Report};

const W: u32 = 900;
const H: u32 = 320;

/// Fault windows as (start ms, end ms, label): stop→start, partition/impair→heal, or to
/// the end of the run.
fn fault_windows(r: &Report, end_ms: f64) -> Vec<(f64, f64, String)> {
    let mut open: BTreeMap<String, (f64, String)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in &r.fault_events {
        let t = e.at_ms as f64;
        match e.action.as_str() {
            "stop" | "partition" | "impair" => {
                open.insert(e.cosigner.clone(), (t, format!("{} {}", e.action, e.cosigner)));
            }
            _ => {
                if let Some((s, label)) = open.remove(&e.cosigner) {
                    out.push((s, t, label));
                }
            }
        }
    }
    out.extend(open.into_values().map(|(s, label)| (s, end_ms, label)));
    out
}

fn svg<F>(draw: F) -> String
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), Box<dyn std::error::Error>>,
{
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        if let Err(e) =
            root.fill(&WHITE).map_err(|e| e.to_string()).and_then(|_| draw(&root).map_err(|e| e.to_string()))
        {
            return format!("<p>plot failed: {}</p>", html_escape(&e));
        }
        let _ = root.present();
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn latency_over_time(r: &Report, windows: &[(f64, f64, String)], end_s: f64) -> String {
    let ymax = r.timeline.iter().map(|p| p.latency_ms).fold(1.0, f64::max) * 1.1;
    svg(|root| {
        let mut c = ChartBuilder::on(root)
            .caption("Event latency over time, p50/p99 per bucket (shaded: fault windows)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..end_s.max(0.001), 0f64..ymax)?;
        c.configure_mesh().x_desc("time since first request (s)").y_desc("latency (ms)").draw()?;
        for (s, e, _) in windows {
            c.draw_series(std::iter::once(Rectangle::new(
                [(s / 1e3, 0.0), (e / 1e3, ymax)],
                RGBColor(255, 200, 120).mix(0.35).filled(),
            )))?;
        }
        // At most ~4,000 points are drawn (every k-th event) so big runs stay readable.
        let step = (r.timeline.len() / 4_000).max(1);
        for (outcome, color) in
            [(PointOutcome::Signed, BLUE), (PointOutcome::Refused, GREEN), (PointOutcome::Failed, RED)]
        {
            c.draw_series(
                r.timeline
                    .iter()
                    .step_by(step)
                    .filter(|p| p.outcome == outcome)
                    .map(|p| Circle::new((p.started_ms / 1e3, p.latency_ms), 2, color.mix(0.5).filled())),
            )?
            .label(format!("{outcome:?}").to_lowercase())
            .legend(move |(x, y)| Circle::new((x, y), 3, color.filled()));
        }
        // p50 and p99 of the events started in each of 40 time buckets.
        let bucket_s = (end_s / 40.0).max(0.001);
        let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); 41];
        for p in &r.timeline {
            buckets[((p.started_ms / 1e3 / bucket_s) as usize).min(40)].push(p.latency_ms);
        }
        let mids = |pick: fn(&Percentiles) -> f64| -> Vec<(f64, f64)> {
            buckets
                .iter()
                .enumerate()
                .filter(|(_, b)| !b.is_empty())
                .map(|(i, b)| ((i as f64 + 0.5) * bucket_s, pick(&percentiles(b))))
                .collect()
        };
        for (label, pick, color) in [
            ("p50", (|p: &Percentiles| p.p50) as fn(&Percentiles) -> f64, BLACK),
            ("p99", (|p: &Percentiles| p.p99) as fn(&Percentiles) -> f64, MAGENTA),
        ] {
            c.draw_series(LineSeries::new(mids(pick), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
        }
        c.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
        Ok(())
    })
}

fn throughput_over_time(r: &Report, windows: &[(f64, f64, String)], end_s: f64) -> String {
    let bucket_s = (end_s / 60.0).max(0.05);
    let n = (end_s / bucket_s).ceil() as usize + 1;
    let mut counts = vec![0usize; n];
    for p in &r.timeline {
        let done_s = (p.started_ms + p.latency_ms) / 1e3;
        counts[((done_s / bucket_s) as usize).min(n - 1)] += 1;
    }
    let rates: Vec<(f64, f64)> =
        counts.iter().enumerate().map(|(i, c)| (i as f64 * bucket_s, *c as f64 / bucket_s)).collect();
    let ymax = rates.iter().map(|r| r.1).fold(1.0, f64::max) * 1.1;
    svg(|root| {
        let mut c = ChartBuilder::on(root)
            .caption(format!("Throughput (completed requests/s, {:.0} ms buckets)", bucket_s * 1e3), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..end_s.max(0.001) + bucket_s, 0f64..ymax)?;
        c.configure_mesh().x_desc("time since first request (s)").y_desc("requests/s").draw()?;
        for (s, e, _) in windows {
            c.draw_series(std::iter::once(Rectangle::new(
                [(s / 1e3, 0.0), (e / 1e3, ymax)],
                RGBColor(255, 200, 120).mix(0.35).filled(),
            )))?;
        }
        c.draw_series(LineSeries::new(rates, BLUE.stroke_width(2)))?;
        Ok(())
    })
}

fn latency_histogram(r: &Report) -> String {
    let cap = (r.latency_ms.p99 * 1.5).max(1.0);
    let bins = 40usize;
    let width = cap / bins as f64;
    let mut counts = vec![0u32; bins + 1];
    for p in &r.timeline {
        counts[((p.latency_ms / width) as usize).min(bins)] += 1;
    }
    let ymax = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    svg(|root| {
        let mut c = ChartBuilder::on(root)
            .caption(
                format!(
                    "Latency histogram (last bin: ≥ {cap:.1} ms; p50 {:.2}, p99 {:.2})",
                    r.latency_ms.p50, r.latency_ms.p99
                ),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..cap + width, 0f64..ymax)?;
        c.configure_mesh().x_desc("latency (ms)").y_desc("requests").draw()?;
        c.draw_series(counts.iter().enumerate().map(|(i, n)| {
            let x0 = i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width * 0.9, *n as f64)], BLUE.mix(0.7).filled())
        }))?;
        Ok(())
    })
}

fn participation(r: &Report) -> String {
    let names: Vec<&String> = r.participation.keys().collect();
    if names.is_empty() {
        return "<p>No signed requests: no participation to plot.</p>".into();
    }
    let ymax = r.participation.values().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    svg(|root| {
        let mut c = ChartBuilder::on(root)
            .caption("Per-cosigner participation (signed requests with its share)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d((0..names.len() - 1).into_segmented(), 0f64..ymax)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => names.get(*i).map(|s| s.to_string()).unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("requests")
            .draw()?;
        c.draw_series(
            Histogram::vertical(&c)
                .style(GREEN.mix(0.6).filled())
                .margin(40)
                .data(names.iter().enumerate().map(|(i, n)| (i, r.participation[*n] as f64))),
        )?;
        Ok(())
    })
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let end_ms = r.timeline.iter().map(|p| p.started_ms + p.latency_ms).fold(0.0, f64::max);
    let windows = fault_windows(r, end_ms);
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>QLS simnet: {name}</title>\
         <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;}}pre{{background:#f4f4f4;padding:1em;}}\
         td,th{{padding:2px 8px;text-align:left;}}.bad{{color:#b00;font-weight:bold;}}</style></head><body>\
         <h1>QLS simnet report: {name}</h1><pre>{summary}</pre><h2>Invariants</h2><table>",
        name = html_escape(&r.scenario),
        summary = html_escape(&r.summary()),
    );
    for i in &r.invariants {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            i.name,
            if i.holds { "" } else { "bad" },
            if i.holds { "holds" } else { "FAILED" },
            html_escape(&i.detail)
        );
    }
    page += "</table><h2>Faults</h2><table><tr><th>event</th><th>ms</th><th>action</th><th>cosigner</th></tr>";
    for e in &r.fault_events {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.at_event.map_or("-".to_string(), |e| e.to_string()),
            e.at_ms,
            e.action,
            html_escape(&e.cosigner)
        );
    }
    page += "</table><h2>Plots</h2>";
    for plot in [
        latency_over_time(r, &windows, end_ms / 1e3),
        throughput_over_time(r, &windows, end_ms / 1e3),
        latency_histogram(r),
        participation(r),
    ] {
        page += &plot;
    }
    page += "</body></html>\n";
    page
}
