//! The text exposition formats: Prometheus 0.0.4 and OpenMetrics 1.0. Families are written
//! one at a time, each with all its samples, as both formats require.

use std::fmt::Write;

use super::histogram::{Snapshot, BOUNDS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
  Prometheus,
  OpenMetrics,
}

impl Format {
  /// The `Content-Type` a scrape endpoint answers with.
  pub fn content_type(self) -> &'static str {
    match self {
      Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
      Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
    }
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
  Counter,
  Gauge,
  Histogram,
}

/// Label pairs of one sample, in order.
pub type Labels<'a> = [(&'a str, &'a str)];

pub struct Exposition {
  format: Format,
  out: String,
  /// The family being written and its kind (samples must match it).
  current: Option<(String, Kind)>,
}

impl Exposition {
  pub fn new(format: Format) -> Self {
    Exposition {
      format,
      out: String::with_capacity(16 * 1024),
      current: None,
    }
  }

  /// Starts a family. `name` is without `_total`; a unit, when given, ends the name.
  pub fn family(&mut self, name: &str, kind: Kind, unit: Option<&str>, help: &str) {
    debug_assert!(
      unit.is_none_or(|u| name.ends_with(u)),
      "{name} must end with its unit"
    );
    let shown = match (self.format, kind) {
      // Prometheus names a counter's family by its sample name.
      (Format::Prometheus, Kind::Counter) => format!("{name}_total"),
      _ => name.to_string(),
    };
    let kind_name = match kind {
      Kind::Counter => "counter",
      Kind::Gauge => "gauge",
      Kind::Histogram => "histogram",
    };
    let _ = writeln!(self.out, "# HELP {shown} {}", escape_help(help));
    let _ = writeln!(self.out, "# TYPE {shown} {kind_name}");
    if let (Format::OpenMetrics, Some(u)) = (self.format, unit) {
      let _ = writeln!(self.out, "# UNIT {shown} {u}");
    }
    self.current = Some((name.to_string(), kind));
  }

  fn name(&self, kind: Kind) -> String {
    match &self.current {
      Some((n, k)) if *k == kind => n.clone(),
      // A caller's bug; the output would not parse, so fail the tests loudly.
      _ => panic!("a {kind:?} sample outside its family"),
    }
  }

  pub fn counter(&mut self, labels: &Labels<'_>, value: u64) {
    let name = self.name(Kind::Counter);
    self.sample(&name, "_total", labels, None, &value.to_string());
  }

  pub fn gauge(&mut self, labels: &Labels<'_>, value: f64) {
    let name = self.name(Kind::Gauge);
    self.sample(&name, "", labels, None, &number(value));
  }

  pub fn histogram(&mut self, labels: &Labels<'_>, s: &Snapshot) {
    let name = self.name(Kind::Histogram);
    for (bound, count) in BOUNDS.iter().zip(s.cumulative) {
      let le = format!("{bound:?}");
      self.sample(&name, "_bucket", labels, Some(&le), &count.to_string());
    }
    let count = s.count().to_string();
    self.sample(&name, "_bucket", labels, Some("+Inf"), &count);
    self.sample(&name, "_count", labels, None, &count);
    self.sample(&name, "_sum", labels, None, &number(s.sum_seconds));
  }

  fn sample(
    &mut self,
    name: &str,
    suffix: &str,
    labels: &Labels<'_>,
    le: Option<&str>,
    value: &str,
  ) {
    let out = &mut self.out;
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
      out.push('{');
      let le = le.map(|v| ("le", v));
      for (i, (k, v)) in labels.iter().copied().chain(le).enumerate() {
        if i > 0 {
          out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
      }
      out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
  }

  pub fn finish(mut self) -> String {
    if self.format == Format::OpenMetrics {
      self.out.push_str("# EOF\n");
    }
    self.out
  }
}

fn number(v: f64) -> String {
  if v.is_nan() {
    "NaN".into()
  } else if v.is_infinite() {
    if v > 0.0 { "+Inf" } else { "-Inf" }.into()
  } else {
    // Rust never writes an exponent here, which both formats accept.
    format!("{v}")
  }
}

fn escape_label(v: &str) -> String {
  v.replace('\\', "\\\\")
    .replace('"', "\\\"")
    .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
  v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::telemetry::Histogram;
  use std::time::Duration;

  #[test]
  fn both_formats_name_counters_and_units_as_they_require() {
    let h = Histogram::default();
    h.observe(Duration::from_millis(20));
    for format in [Format::Prometheus, Format::OpenMetrics] {
      let mut x = Exposition::new(format);
      x.family("a_events", Kind::Counter, None, "Events.\nSecond line");
      x.counter(&[("g", "x\"y\\z\n")], 3);
      x.family(
        "b_duration_seconds",
        Kind::Histogram,
        Some("seconds"),
        "Time.",
      );
      x.histogram(&[], &h.snapshot());
      x.family("c_events", Kind::Gauge, None, "Now.");
      x.gauge(&[("s", "1")], 2.5);
      let text = x.finish();
      assert!(
        text.contains("a_events_total{g=\"x\\\"y\\\\z\\n\"} 3\n"),
        "{text}"
      );
      assert!(
        text.contains("b_duration_seconds_bucket{le=\"0.01\"} 0\n"),
        "{text}"
      );
      assert!(
        text.contains("b_duration_seconds_bucket{le=\"0.025\"} 1\n"),
        "{text}"
      );
      assert!(
        text.contains("b_duration_seconds_bucket{le=\"+Inf\"} 1\n"),
        "{text}"
      );
      assert!(
        text.contains("b_duration_seconds_count 1\nb_duration_seconds_sum 0.02\n"),
        "{text}"
      );
      assert!(text.contains("c_events{s=\"1\"} 2.5\n"), "{text}");
      assert!(text.contains("# HELP "), "{text}");
      match format {
        Format::Prometheus => {
          assert!(text.contains("# TYPE a_events_total counter\n"), "{text}");
          assert!(
            text.contains("# HELP a_events_total Events.\\nSecond line\n"),
            "{text}"
          );
          assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
          );
        }
        Format::OpenMetrics => {
          assert!(text.contains("# TYPE a_events counter\n"), "{text}");
          assert!(
            text.contains("# UNIT b_duration_seconds seconds\n"),
            "{text}"
          );
          assert!(text.ends_with("# EOF\n"), "{text}");
        }
      }
    }
  }
}
