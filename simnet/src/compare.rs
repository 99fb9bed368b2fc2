//! `qls-simnet compare A.json B.json`: the differences between two reports (latency,
//! throughput, outcomes, refusals by tag), for parameter sweeps. Reads the reports as
//! JSON values, so older and newer report schemas compare on the fields they share.
//!
//! Must never: invent a value missing from a report (it shows `-`).

use std::fmt::Write;

use serde_json::Value;

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn cell(x: Option<f64>) -> String {
    x.map(|x| if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.3}") }).unwrap_or_else(|| "-".into())
}

fn change(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a != 0.0 => format!("{:+.1}%", (b - a) / a * 100.0),
        (Some(a), Some(b)) if a == b => "0".into(),
        (Some(_), Some(b)) => format!("{b:+}"),
        _ => "-".into(),
    }
}

/// A Markdown table of the differences between reports `a` and `b`.
pub fn compare(a: &Value, b: &Value) -> String {
    let mut rows: Vec<(String, Vec<&str>)> = [
        ("requests", vec!["requests"]),
        ("signed", vec!["signed"]),
        ("refused requests", vec!["refused_requests"]),
        ("failed", vec!["failed"]),
        ("latency p50 ms", vec!["latency_ms", "p50"]),
        ("latency p90 ms", vec!["latency_ms", "p90"]),
        ("latency p99 ms", vec!["latency_ms", "p99"]),
        ("latency max ms", vec!["latency_ms", "max"]),
        ("throughput /s", vec!["throughput_per_s"]),
        ("duration s", vec!["duration_s"]),
        ("node requests", vec!["node_requests"]),
        ("faults injected", vec!["faults_injected"]),
        ("funds lost msat", vec!["funds_lost_msat"]),
        ("cosigner nonce uses", vec!["cosigner_nonce_uses"]),
        ("peak RSS KiB", vec!["peak_rss_kib"]),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p))
    .collect();
    let mut tags: Vec<String> = [a, b]
        .iter()
        .filter_map(|r| r.get("refused").and_then(Value::as_object))
        .flat_map(|m| m.keys().cloned())
        .collect();
    tags.sort();
    tags.dedup();
    // Per event kind: outcomes and latency.
    let mut kinds: Vec<String> = [a, b]
        .iter()
        .filter_map(|r| r.get("events").and_then(Value::as_object))
        .flat_map(|m| m.keys().cloned())
        .collect();
    kinds.sort();
    kinds.dedup();
    let kind_rows: Vec<(String, Vec<String>)> = kinds
        .iter()
        .flat_map(|k| {
            [
                (format!("{k} done"), vec!["events".to_string(), k.clone(), "done".into()]),
                (format!("{k} refused"), vec!["events".to_string(), k.clone(), "refused".into()]),
                (format!("{k} failed"), vec!["events".to_string(), k.clone(), "failed".into()]),
                (format!("{k} p50 ms"), vec!["latency_by_event_ms".to_string(), k.clone(), "p50".into()]),
                (format!("{k} p99 ms"), vec!["latency_by_event_ms".to_string(), k.clone(), "p99".into()]),
            ]
        })
        .collect();
    let tag_rows: Vec<(String, String)> = tags.iter().map(|t| (format!("refused {t}"), t.clone())).collect();
    let name = |r: &Value| format!("{} (seed {})", r["scenario"].as_str().unwrap_or("?"), cell(num(r, &["seed"])));
    let mut out = format!("| metric | A: {} | B: {} | change |\n|---|---|---|---|\n", name(a), name(b));
    for (label, path) in rows.drain(..) {
        let (x, y) = (num(a, &path), num(b, &path));
        let _ = writeln!(out, "| {label} | {} | {} | {} |", cell(x), cell(y), change(x, y));
    }
    for (label, path) in kind_rows {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let (x, y) = (num(a, &path), num(b, &path));
        let _ = writeln!(out, "| {label} | {} | {} | {} |", cell(x), cell(y), change(x, y));
    }
    for (label, tag) in tag_rows {
        let get = |r: &Value| r.get("refused").and_then(|m| m.get(&tag)).and_then(Value::as_f64).or(Some(0.0));
        let _ = writeln!(out, "| {label} | {} | {} | {} |", cell(get(a)), cell(get(b)), change(get(a), get(b)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_and_missing_fields() {
        let a = serde_json::json!({"scenario": "x", "seed": 1, "signed": 100, "latency_ms": {"p50": 2.0}, "refused": {"t": 4}});
        let b =
            serde_json::json!({"scenario": "y", "seed": 2, "signed": 110, "latency_ms": {"p50": 3.0}, "refused": {}});
        let t = compare(&a, &b);
        assert!(t.contains("| signed | 100 | 110 | +10.0% |"), "{t}");
        assert!(t.contains("| latency p50 ms | 2 | 3 | +50.0% |"), "{t}");
        assert!(t.contains("| refused t | 4 | 0 | -100.0% |"), "{t}");
        assert!(t.contains("| failed | - | - | - |"), "{t}");
        let a = serde_json::json!({"scenario": "x", "seed": 1, "events": {"send": {"done": 10}}, "latency_by_event_ms": {"send": {"p99": 40.0}}});
        let b = serde_json::json!({"scenario": "x", "seed": 1, "events": {"send": {"done": 5}}, "latency_by_event_ms": {"send": {"p99": 20.0}}});
        let t = compare(&a, &b);
        assert!(t.contains("| send done | 10 | 5 | -50.0% |"), "{t}");
        assert!(t.contains("| send p99 ms | 40 | 20 | -50.0% |"), "{t}");
    }
}
