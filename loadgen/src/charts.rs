//! SVG charts of a benchmark, drawn by hand (a few hundred bytes of markup each, no plotting
//! dependency): grouped horizontal bars on a logarithmic axis for latency percentiles per
//! scenario, and line charts for the cost curves.

use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1",
];
const FONT: &str = "font-family=\"sans-serif\" font-size=\"12\"";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A decade-spaced logarithmic axis covering `min..max` (both > 0).
struct LogAxis {
    low: f64,
    high: f64,
}

impl LogAxis {
    fn covering(values: impl Iterator<Item = f64>) -> LogAxis {
        let (mut min, mut max) = (f64::MAX, f64::MIN);
        for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
        }
        if min > max {
            (min, max) = (1.0, 10.0);
        }
        let low = 10f64.powf(min.log10().floor());
        let mut high = 10f64.powf(max.log10().ceil());
        if high <= low {
            high = low * 10.0;
        }
        LogAxis { low, high }
    }

    /// Position of `v` in 0..=1.
    fn at(&self, v: f64) -> f64 {
        let v = v.max(self.low);
        (v.log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
    }

    fn ticks(&self) -> Vec<f64> {
        let mut ticks = Vec::new();
        let mut t = self.low;
        while t <= self.high * 1.0001 {
            ticks.push(t);
            t *= 10.0;
        }
        ticks
    }
}

/// A linear axis from 0 to a round number above every value.
struct LinearAxis {
    high: f64,
}

impl LinearAxis {
    fn covering(values: impl Iterator<Item = f64>) -> LinearAxis {
        let max = values.fold(0.0f64, f64::max);
        if max <= 0.0 {
            return LinearAxis { high: 1.0 };
        }
        let step = 10f64.powf(max.log10().floor());
        LinearAxis {
            high: (max / step).ceil() * step,
        }
    }

    fn at(&self, v: f64) -> f64 {
        v / self.high
    }

    fn ticks(&self) -> Vec<f64> {
        (0..=5).map(|i| self.high * f64::from(i) / 5.0).collect()
    }
}

fn number(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{}M", v / 1_000_000.0)
    } else if v >= 1000.0 {
        format!("{}k", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_owned()
    }
}

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

/// A line chart with a logarithmic x axis and a linear (or logarithmic) y axis.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    y_log: bool,
    lines: &[Line],
) -> String {
    let (left, top, width, height) = (70.0, 50.0, WIDTH - 100.0, 260.0);
    let total_height = top + height + 50.0;
    let xs = LogAxis::covering(lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)));
    let ys_values = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let y_log_axis = LogAxis::covering(ys_values());
    let y_lin_axis = LinearAxis::covering(ys_values());
    let y_at = |v: f64| {
        let f = if y_log {
            y_log_axis.at(v)
        } else {
            y_lin_axis.at(v)
        };
        top + height - f * height
    };
    let y_ticks = if y_log {
        y_log_axis.ticks()
    } else {
        y_lin_axis.ticks()
    };
    let x_at = |v: f64| left + xs.at(v) * width;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{total_height}\" \
         viewBox=\"0 0 {WIDTH} {total_height}\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"10\" y=\"20\" {FONT} font-weight=\"bold\">{}</text>",
        escape(title)
    );
    let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    legend(&mut out, &names, left, 40.0);
    for tick in y_ticks {
        let y = y_at(tick);
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
    for tick in xs.ticks() {
        let x = x_at(tick);
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
        "<text x=\"{}\" y=\"{}\" {FONT} text-anchor=\"middle\">{} (log scale)</text>\
         <text x=\"14\" y=\"{}\" {FONT} text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{}</text>",
        left + width / 2.0,
        top + height + 35.0,
        escape(x_label),
        top + height / 2.0,
        top + height / 2.0,
        escape(y_label)
    );
    for (i, line) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = line
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", x_at(*x), y_at(*y)))
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
                x_at(*x),
                y_at(*y),
                escape(&line.name),
                number(*x)
            );
        }
    }
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
        assert!(lines.contains("<polyline") && lines.contains("connections"));
    }
}
