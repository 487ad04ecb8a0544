//! The history as a tester reads it outside this program: JSON lines in Jepsen's shape, and a
//! chart of throughput and latency over time with the faults marked.
//!
//! Every operation becomes two lines: an `invoke` when the client started it, and its completion
//! when it learned the final result: `ok` (applied, or a view), `fail` (definitely not applied)
//! or `info` (outcome unknown). Every fault becomes a `start` and a `stop` line of the process
//! `nemesis`. Lines are ordered by time (milliseconds since the workload started).

use std::fmt::Write as _;

use chart_axes::LogAxis;
use serde_json::{json, Value};

use crate::history::{History, OpKind, OpResult};
use crate::nemesis::FaultRecord;

/// The history and the faults as JSON lines, in time order.
pub fn jsonl(history: &History, faults: &[FaultRecord]) -> String {
    let mut events: Vec<(u64, u8, Value)> = Vec::new();
    for op in &history.ops {
        let process = match op.client {
            crate::workload::ADMIN_CLIENT => json!("admin"),
            crate::nemesis::stale_gateway::PROBE_CLIENT => json!("probe"),
            client => json!(client),
        };
        let mut base = json!({
            "process": process,
            "f": op.kind.name(),
            "key": op.key,
            "product": op.product,
            "quantity": op.quantity,
        });
        // Checkout's operations: their lines, customer, and the hold or order they act on.
        if let Value::Object(target) = serde_json::to_value(&op.target).expect("targets serialize")
        {
            for (name, value) in target {
                base[name.as_str()] = value;
            }
        }
        let mut invoke = base.clone();
        invoke["type"] = json!("invoke");
        invoke["time_ms"] = json!(op.invoked_ms);
        events.push((op.invoked_ms, 0, invoke));
        let mut done = base;
        done["type"] = json!(completion_type(&op.result));
        done["time_ms"] = json!(op.completed_ms);
        done["attempts"] = json!(op.attempts);
        done["result"] = serde_json::to_value(&op.result).expect("results serialize");
        events.push((op.completed_ms, 1, done));
    }
    for fault in faults {
        let base = json!({
            "process": "nemesis",
            "type": "info",
            "fault": fault.kind.name(),
            "description": fault.description,
            "nodes": fault.nodes,
        });
        let mut start = base.clone();
        start["f"] = json!("start");
        start["time_ms"] = json!(fault.started_ms);
        events.push((fault.started_ms, 0, start));
        let mut stop = base;
        stop["f"] = json!("stop");
        stop["time_ms"] = json!(fault.healed_ms);
        stop["recovered_ms"] = json!(fault.recovered_ms);
        if let Some(figures) = &fault.figures {
            stop["figures"] = serde_json::to_value(figures).expect("figures serialize");
        }
        events.push((fault.healed_ms, 1, stop));
    }
    events.sort_by_key(|(time, order, _)| (*time, *order));
    let mut out = String::new();
    for (_, _, event) in events {
        out.push_str(&event.to_string());
        out.push('\n');
    }
    out
}

/// `ok`, `fail` or `info`, as Jepsen names a completion.
pub fn completion_type(result: &OpResult) -> &'static str {
    match result {
        OpResult::Confirmed { .. }
        | OpResult::Restocked { .. }
        | OpResult::Viewed { .. }
        | OpResult::Held { .. }
        | OpResult::Placed { .. }
        | OpResult::Released { .. }
        | OpResult::Cancelled { .. } => "ok",
        OpResult::Rejected { .. } | OpResult::Unavailable { .. } => "fail",
        OpResult::Unknown { .. } => "info",
    }
}

/// Per second of the run: purchases confirmed (by completion time) and the slowest confirmed
/// purchase's latency (the maximum, so a stall shows).
pub fn per_second(history: &History, seconds: usize) -> Vec<(u64, u64)> {
    let mut buckets = vec![(0u64, 0u64); seconds.max(1)];
    for op in &history.ops {
        if matches!(op.result, OpResult::Confirmed { .. }) && op.kind == OpKind::Purchase {
            let second = (op.completed_ms / 1000) as usize;
            if let Some(bucket) = buckets.get_mut(second) {
                bucket.0 += 1;
                bucket.1 = bucket.1.max(op.latency_ms());
            }
        }
    }
    buckets
}

/// The chart's frame: size, margins, and where a second of the run falls.
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    top: f64,
    plot_w: f64,
    /// Height of each of the two plots (purchases above, latency below).
    plot_h: f64,
    seconds: usize,
}

impl Frame {
    fn new(seconds: usize) -> Frame {
        let (width, height, left, top) = (960.0, 360.0, 56.0, 28.0);
        Frame {
            width,
            height,
            left,
            top,
            plot_w: width - left - 16.0,
            plot_h: (height - top - 64.0) / 2.0,
            seconds,
        }
    }

    /// Horizontal position of `second` of the run.
    fn x(&self, second: f64) -> f64 {
        self.left + self.plot_w * second / self.seconds as f64
    }

    /// Top of the latency plot.
    fn latency_top(&self) -> f64 {
        self.top + self.plot_h + 16.0
    }
}

/// The latency axis: 1 ms to 10 s, log scale, with its tick labels.
const LATENCY_TICKS: [&str; 5] = ["1 ms", "10", "100", "1 s", "10 s"];

fn latency_axis() -> LogAxis {
    LogAxis::new(1.0, 10_000.0)
}

/// An SVG chart: confirmed purchases per second (bars), the slowest confirmed purchase per
/// second (line, log scale), and each fault as a shaded band from injection to heal.
pub fn chart_svg(history: &History, faults: &[FaultRecord], duration_ms: u64) -> String {
    let seconds = (duration_ms / 1000 + 1) as usize;
    let buckets = per_second(history, seconds);
    let frame = Frame::new(seconds);
    let (width, height, left) = (frame.width, frame.height, frame.left);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{left}" y="18" font-weight="bold">confirmed purchases per second (bars) and slowest confirmed purchase, ms (line, log scale); faults shaded</text>
"##
    );
    fault_bands(&mut svg, &frame, faults);
    purchase_bars(&mut svg, &frame, &buckets);
    latency_line(&mut svg, &frame, &buckets);
    let axis_y = frame.latency_top() + frame.plot_h + 20.0;
    for second in (0..seconds).step_by((seconds / 10).max(1)) {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{axis_y:.1}" text-anchor="middle">{second} s</text>"##,
            frame.x(second as f64)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Each fault as a band across both plots, from injection to heal, named.
fn fault_bands(svg: &mut String, frame: &Frame, faults: &[FaultRecord]) {
    for fault in faults {
        let (from, to) = (
            fault.started_ms as f64 / 1000.0,
            fault.healed_ms.max(fault.started_ms) as f64 / 1000.0,
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{}" width="{:.1}" height="{:.1}" fill="#f4a261" fill-opacity="0.25"/><text x="{:.1}" y="{:.1}" fill="#9c4a00" font-size="10">{}</text>"##,
            frame.x(from),
            frame.top,
            (frame.x(to) - frame.x(from)).max(1.0),
            frame.plot_h * 2.0 + 16.0,
            frame.x(from) + 2.0,
            frame.top + frame.plot_h + 12.0,
            fault.kind.name()
        );
    }
}

/// Confirmed purchases per second, as bars scaled to the busiest second.
fn purchase_bars(svg: &mut String, frame: &Frame, buckets: &[(u64, u64)]) {
    let (top, plot_h) = (frame.top, frame.plot_h);
    let max_rate = buckets.iter().map(|b| b.0).max().unwrap_or(1).max(1) as f64;
    for (second, (count, _)) in buckets.iter().enumerate() {
        let h = plot_h * (*count as f64) / max_rate;
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#1d4ed8"/>"##,
            frame.x(second as f64) + 0.5,
            top + plot_h - h,
            (frame.plot_w / frame.seconds as f64 - 1.0).max(0.5)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="4" y="{:.1}">{max_rate:.0}/s</text><text x="4" y="{:.1}">0</text>"##,
        top + 10.0,
        top + plot_h
    );
}

/// The slowest confirmed purchase of each second with any, on the latency axis, and its grid.
fn latency_line(svg: &mut String, frame: &Frame, buckets: &[(u64, u64)]) {
    let axis = latency_axis();
    let (lat_top, plot_h) = (frame.latency_top(), frame.plot_h);
    let y = |ms: f64| lat_top + plot_h - plot_h * axis.at(ms);
    let points: Vec<String> = buckets
        .iter()
        .enumerate()
        .filter(|(_, (count, _))| *count > 0)
        .map(|(second, (_, ms))| {
            format!("{:.1},{:.1}", frame.x(second as f64 + 0.5), y(*ms as f64))
        })
        .collect();
    let _ = writeln!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="#b91c1c" stroke-width="1.5"/>"##,
        points.join(" ")
    );
    for (label, ms) in LATENCY_TICKS.iter().zip(axis.ticks()) {
        let _ = writeln!(
            svg,
            r##"<line x1="{}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#e5e7eb"/><text x="4" y="{:.1}">{label}</text>"##,
            frame.left,
            frame.left + frame.plot_w,
            y(ms),
            y(ms),
            y(ms) + 4.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{test_op as op, OpRecord};
    use crate::nemesis::FaultKind;

    #[test]
    fn every_operation_is_an_invoke_then_its_completion() {
        let mut history = History::default();
        history.extend(vec![
            op(
                OpKind::Purchase,
                10,
                30,
                OpResult::Unknown {
                    message: "timeout".into(),
                },
            ),
            op(
                OpKind::Purchase,
                20,
                25,
                OpResult::Rejected {
                    code: "insufficient_stock".into(),
                    message: String::new(),
                },
            ),
        ]);
        let lines: Vec<Value> = jsonl(&history, &[])
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let kinds: Vec<(&str, u64)> = lines
            .iter()
            .map(|l| (l["type"].as_str().unwrap(), l["time_ms"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [("invoke", 10), ("invoke", 20), ("fail", 25), ("info", 30)]
        );
    }

    #[test]
    fn checkout_operations_name_their_lines_and_what_they_act_on() {
        let mut history = History::default();
        let lines = vec![flashstock_api::Line {
            product: "p".into(),
            quantity: 2,
        }];
        let cancel = OpRecord {
            target: crate::history::Target {
                lines,
                customer: None,
                hold: None,
                order: Some(flashstock_api::OrderId(7)),
            },
            ..op(
                OpKind::Cancel,
                10,
                20,
                OpResult::Cancelled {
                    order: flashstock_api::OrderId(7),
                    cancelled_at_ms: Some(99),
                    lines: Vec::new(),
                    replayed: false,
                },
            )
        };
        history.extend(vec![cancel]);
        let events: Vec<Value> = jsonl(&history, &[])
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        for event in &events {
            assert_eq!(event["f"], "cancel");
            assert_eq!(event["order"], 7);
            assert_eq!(event["lines"][0]["quantity"], 2);
            assert!(event.get("hold").is_none(), "{event}");
        }
        assert_eq!(events[1]["type"], "ok");
        assert_eq!(events[1]["result"]["Cancelled"]["cancelled_at_ms"], 99);
    }

    fn fault(kind: FaultKind, started_ms: u64, healed_ms: u64) -> FaultRecord {
        FaultRecord {
            kind,
            description: kind.name().into(),
            nodes: vec![1],
            started_ms,
            healed_ms,
            recovered_ms: Some(healed_ms + 100),
            resumed_ms: Some(healed_ms + 200),
            problems: Vec::new(),
            figures: None,
        }
    }

    #[test]
    fn the_chart_has_a_bar_per_second_and_a_band_per_fault() {
        let mut history = History::default();
        let confirmed = OpResult::Confirmed {
            order: flashstock_api::Order {
                id: flashstock_api::OrderId::new(1, 0),
                key: "k".into(),
                product: "p".into(),
                quantity: 1,
                price_cents: 100,
                remaining: 1,
                placed_at_ms: 0,
                token: None,
                customer: None,
            },
            replayed: false,
        };
        history.extend(vec![
            op(OpKind::Purchase, 100, 200, confirmed.clone()),
            op(OpKind::Purchase, 2100, 2300, confirmed),
        ]);
        let faults = [
            fault(FaultKind::Kill, 500, 1500),
            fault(FaultKind::Partition, 2000, 2900),
        ];
        let svg = chart_svg(&history, &faults, 3000);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Seconds 0 to 3: four bars.
        assert_eq!(svg.matches("fill=\"#1d4ed8\"").count(), 4);
        // One shaded band per fault, labelled with its kind, in time order.
        let bands: Vec<&str> = svg
            .lines()
            .filter(|line| line.contains("fill=\"#f4a261\""))
            .collect();
        assert_eq!(bands.len(), faults.len(), "{svg}");
        for (band, fault) in bands.iter().zip(&faults) {
            assert!(
                band.contains(&format!(">{}</text>", fault.kind.name())),
                "{band}"
            );
        }
    }
}
