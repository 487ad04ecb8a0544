//! Axes of flashstock's SVG charts: where a value falls on a logarithmic or a linear axis, its
//! ticks, and their labels. The charts themselves are drawn by hand where they are used (a few
//! hundred bytes of markup each, no plotting dependency): the benchmark's in
//! `loadgen/src/charts.rs`, the fault harness's timeline in `jepsen-tests/src/timeline.rs`.
//!
//! Why a crate of its own: the load generator and the fault harness both draw charts and
//! neither depends on the other (one measures the cluster, the other breaks it), so the one copy
//! of the axes lives below both. It depends on nothing.

/// A decade-spaced logarithmic axis from `low` to `high` (both > 0, powers of ten when built by
/// [`LogAxis::covering`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogAxis {
    pub low: f64,
    pub high: f64,
}

impl LogAxis {
    /// An axis from `low` to `high`, both > 0, `low < high`.
    pub fn new(low: f64, high: f64) -> LogAxis {
        assert!(0.0 < low && low < high, "a log axis needs 0 < low < high");
        LogAxis { low, high }
    }

    /// The smallest decade-spaced axis covering every positive, finite value (1 to 10 when there
    /// is none).
    pub fn covering(values: impl Iterator<Item = f64>) -> LogAxis {
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

    /// Position of `v` in 0..=1; values outside the axis sit at its ends.
    pub fn at(&self, v: f64) -> f64 {
        let v = v.max(self.low);
        ((v.log10() - self.low.log10()) / (self.high.log10() - self.low.log10())).min(1.0)
    }

    /// One tick per decade, `low` to `high`.
    pub fn ticks(&self) -> Vec<f64> {
        let mut ticks = Vec::new();
        let mut t = self.low;
        while t <= self.high * 1.0001 {
            ticks.push(t);
            t *= 10.0;
        }
        ticks
    }
}

/// A linear axis from 0 to `high`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearAxis {
    pub high: f64,
}

impl LinearAxis {
    /// The axis from 0 to a round number (a multiple of a power of ten) above every value.
    pub fn covering(values: impl Iterator<Item = f64>) -> LinearAxis {
        let max = values.fold(0.0f64, f64::max);
        if max <= 0.0 {
            return LinearAxis { high: 1.0 };
        }
        let step = 10f64.powf(max.log10().floor());
        LinearAxis {
            high: (max / step).ceil() * step,
        }
    }

    /// Position of `v` in 0..=1 for `v` in 0..=high.
    pub fn at(&self, v: f64) -> f64 {
        v / self.high
    }

    /// Six ticks: 0, a fifth of `high`, ... `high`.
    pub fn ticks(&self) -> Vec<f64> {
        (0..=5).map(|i| self.high * f64::from(i) / 5.0).collect()
    }
}

/// A tick's label: `2M`, `10k`, `250`, `0.05`.
pub fn number(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{}M", v / 1_000_000.0)
    } else if v >= 1000.0 {
        format!("{}k", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v}")
    } else if v == 0.0 {
        "0".to_owned()
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// Text made safe inside SVG markup and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_axis_covers_its_values_in_decades() {
        let axis = LogAxis::covering([3.0, 420.0].into_iter());
        assert_eq!((axis.low, axis.high), (1.0, 1000.0));
        assert_eq!(axis.ticks(), [1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(axis.at(1.0), 0.0);
        assert!((axis.at(10.0) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(axis.at(1000.0), 1.0);
        // Outside the axis: at its ends.
        assert_eq!(axis.at(0.5), 0.0);
        assert_eq!(axis.at(1e6), 1.0);
        assert_eq!(
            LogAxis::covering(std::iter::empty()),
            LogAxis::new(1.0, 10.0)
        );
    }

    #[test]
    fn a_linear_axis_ends_on_a_round_number() {
        let axis = LinearAxis::covering([120.0, 3400.0].into_iter());
        assert_eq!(axis.high, 4000.0);
        assert_eq!(axis.ticks()[1], 800.0);
        assert_eq!(axis.at(2000.0), 0.5);
        assert_eq!(LinearAxis::covering(std::iter::empty()).high, 1.0);
    }

    #[test]
    fn labels_are_short_and_markup_is_escaped() {
        let labels = [
            (2_000_000.0, "2M"),
            (10_000.0, "10k"),
            (250.0, "250"),
            (0.05, "0.05"),
            (0.5, "0.5"),
            (0.0, "0"),
        ];
        for (value, label) in labels {
            assert_eq!(number(value), label);
        }
        assert_eq!(escape("a <b> & \"c\""), "a &lt;b&gt; &amp; &quot;c&quot;");
    }
}
