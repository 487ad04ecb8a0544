//! SVG charts of a benchmark, drawn by hand (a few hundred bytes of markup each, no plotting
//! dependency): grouped horizontal bars on a logarithmic axis for latency percentiles per
//! scenario, and line charts for the cost curves. The axes come from `chart_axes`, shared with the
//! fault harness's timeline.

use std::fmt::Write as _;

use chart_axes::{escape, number, LinearAxis, LogAxis};

const WIDTH: f64 = 760.0;
const COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1",
];
const FONT: &str = "font-family=\"sans-serif\" font-size=\"12\"";

fn legend(out: &mut String, names: &[&str], x: f64, y: f64) {
    for (i, name) in names.iter().enumerate() {
        let lx = x + i as f64 * 110.0;
        let _ = write!(
            out,
            "<rect x=\"{lx}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" {FONT}>{}</text>",
            y - 10.0,
            COLORS[i % COLORS.len()],
            lx + 16.0,
            y,
            escape(name)
        );
    }
}

/// Grouped horizontal bars, one group per row label, one bar per series, on a log axis.
/// `rows` are `(label, values)` with one value per series name (0 or less: no bar).
pub fn grouped_bars(
    title: &str,
    unit: &str,
    series: &[&str],
    rows: &[(String, Vec<f64>)],
) -> String {
    let label_width = 220.0;
    let bar = 9.0;
    let group = bar * series.len() as f64 + 8.0;
    let top = 50.0;
    let plot_width = WIDTH - label_width - 30.0;
    let height = top + group * rows.len() as f64 + 40.0;
    let axis = LogAxis::covering(rows.iter().flat_map(|(_, v)| v.iter().copied()));
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"10\" y=\"20\" {FONT} font-weight=\"bold\">{}</text>",
        escape(title)
    );
    legend(&mut out, series, label_width, 40.0);
    let bottom = top + group * rows.len() as f64;
    for tick in axis.ticks() {
        let x = label_width + axis.at(tick) * plot_width;
        let _ = write!(
            out,
            "<line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{bottom}\" stroke=\"#ddd\"/>\
             <text x=\"{x}\" y=\"{}\" {FONT} text-anchor=\"middle\">{}</text>",
            bottom + 15.0,
            number(tick)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" {FONT} text-anchor=\"middle\">{} (log scale)</text>",
        label_width + plot_width / 2.0,
        bottom + 32.0,
        escape(unit)
    );
    for (r, (label, values)) in rows.iter().enumerate() {
        let y = top + r as f64 * group;
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" {FONT} text-anchor=\"end\">{}</text>",
            label_width - 6.0,
            y + group / 2.0,
            escape(label)
        );
        for (s, value) in values.iter().enumerate() {
            if *value <= 0.0 {
                continue;
            }
            let w = (axis.at(*value) * plot_width).max(1.0);
            let _ = write!(
                out,
                "<rect x=\"{label_width}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\">\
                 <title>{} {}: {value:.2} {}</title></rect>",
                y + s as f64 * bar,
                bar - 1.0,
                COLORS[s % COLORS.len()],
                escape(label),
                escape(series[s]),
                escape(unit)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// One line of a line chart.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// An axis of a line chart.
enum Axis {
    Log(LogAxis),
    Linear(LinearAxis),
}

impl Axis {
    fn at(&self, v: f64) -> f64 {
        match self {
            Axis::Log(axis) => axis.at(v),
            Axis::Linear(axis) => axis.at(v),
        }
    }

    fn ticks(&self) -> Vec<f64> {
        match self {
            Axis::Log(axis) => axis.ticks(),
            Axis::Linear(axis) => axis.ticks(),
        }
    }
}

/// The plot area of a line chart and its two axes.
struct Plot {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    xs: Axis,
    ys: Axis,
}

impl Plot {
    fn x_at(&self, v: f64) -> f64 {
        self.left + self.xs.at(v) * self.width
    }

    fn y_at(&self, v: f64) -> f64 {
        self.top + self.height - self.ys.at(v) * self.height
    }

    /// Grid lines and tick labels of both axes, and the axes' names.
    fn draw_axes(&self, out: &mut String, x_label: &str, y_label: &str) {
        let (left, top, width, height) = (self.left, self.top, self.width, self.height);
        for tick in self.ys.ticks() {
            let y = self.y_at(tick);
            let _ = write!(
                out,
                "<line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{}\" {FONT} text-anchor=\"end\">{}</text>",
                left + width,
                left - 4.0,
                y + 4.0,
                number(tick)
            );
        }
        for tick in self.xs.ticks() {
            let x = self.x_at(tick);
            let _ = write!(
                out,
                "<line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{}\" stroke=\"#ddd\"/>\
                 <text x=\"{x}\" y=\"{}\" {FONT} text-anchor=\"middle\">{}</text>",
                top + height,
                top + height + 15.0,
                number(tick)
            );
        }
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" {FONT} text-anchor=\"middle\">{}{}</text>\
             <text x=\"14\" y=\"{}\" {FONT} text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{}</text>",
            left + width / 2.0,
            top + height + 35.0,
            escape(x_label),
            if matches!(self.xs, Axis::Log(_)) {
                " (log scale)"
            } else {
                ""
            },
            top + height / 2.0,
            top + height / 2.0,
            escape(y_label)
        );
    }

    /// One polyline per line, with a circle (and its value as a tooltip) per point.
    fn draw_lines(&self, out: &mut String, lines: &[Line]) {
        for (i, line) in lines.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<String> = line
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", self.x_at(*x), self.y_at(*y)))
                .collect();
            let _ = write!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
                points.join(" ")
            );
            for (x, y) in &line.points {
                let _ = write!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{}: {} → {y:.2}</title></circle>",
                    self.x_at(*x),
                    self.y_at(*y),
                    escape(&line.name),
                    number(*x)
                );
            }
        }
    }
}

/// A line chart with a logarithmic x axis and a linear (or logarithmic) y axis.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    y_log: bool,
    lines: &[Line],
) -> String {
    chart(title, (x_label, y_label), (true, y_log), lines)
}

/// A line chart over time: both axes linear, from 0.
pub fn time_chart(title: &str, x_label: &str, y_label: &str, lines: &[Line]) -> String {
    chart(title, (x_label, y_label), (false, false), lines)
}

/// A line chart; `logs` says which axes (x, y) are logarithmic.
fn chart(title: &str, labels: (&str, &str), logs: (bool, bool), lines: &[Line]) -> String {
    let (x_label, y_label) = labels;
    let axis = |log: bool, values: Vec<f64>| {
        if log {
            Axis::Log(LogAxis::covering(values.into_iter()))
        } else {
            Axis::Linear(LinearAxis::covering(values.into_iter()))
        }
    };
    let values = |pick: fn(&(f64, f64)) -> f64| -> Vec<f64> {
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(pick))
            .collect()
    };
    let plot = Plot {
        left: 70.0,
        top: 50.0,
        width: WIDTH - 100.0,
        height: 260.0,
        xs: axis(logs.0, values(|p| p.0)),
        ys: axis(logs.1, values(|p| p.1)),
    };
    let total_height = plot.top + plot.height + 50.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{total_height}\" \
         viewBox=\"0 0 {WIDTH} {total_height}\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"10\" y=\"20\" {FONT} font-weight=\"bold\">{}</text>",
        escape(title)
    );
    let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    legend(&mut out, &names, plot.left, 40.0);
    plot.draw_axes(&mut out, x_label, y_label);
    plot.draw_lines(&mut out, lines);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_every_label() {
        let bars = grouped_bars(
            "latency",
            "ms",
            &["p50", "p99"],
            &[
                ("views <a>".into(), vec![1.5, 40.0]),
                ("buys".into(), vec![0.0, 9.0]),
            ],
        );
        assert!(bars.starts_with("<svg") && bars.ends_with("</svg>\n"));
        assert!(bars.contains("views &lt;a&gt;") && bars.contains("buys"));
        let lines = line_chart(
            "throughput",
            "connections",
            "req/s",
            false,
            &[Line {
                name: "views".into(),
                points: vec![(100.0, 5000.0), (1000.0, 9000.0)],
            }],
        );
        assert!(lines.contains("<polyline") && lines.contains("connections (log scale)"));
        let over_time = time_chart(
            "rss",
            "minutes",
            "MiB",
            &[Line {
                name: "voter-1".into(),
                points: vec![(0.5, 120.0), (1.0, 130.0)],
            }],
        );
        assert!(over_time.contains("<polyline") && !over_time.contains("log scale"));
    }
}
