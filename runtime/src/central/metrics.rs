//! Request counters and duration histograms for `GET /metrics` (Prometheus
//! text format 0.0.4).
//!
//! Labels are bounded: `method` is a deployed method's name or `_unknown`
//! (for 404s and routes outside `/api/{method}`), so a caller cannot grow the
//! label set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the duration buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// One method's counts: requests by status, and their durations.
#[derive(Default)]
struct PerMethod {
    statuses: BTreeMap<u16, u64>,
    durations: Histogram,
}

/// By method name. A request only allocates when its method is seen first.
#[derive(Default)]
struct Inner {
    methods: BTreeMap<String, PerMethod>,
}

/// The counters of one central node.
#[derive(Default)]
pub(crate) struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Counts one answered request.
    pub(crate) fn observe(&self, method: &str, status: u16, duration: Duration) {
        let mut inner = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !inner.methods.contains_key(method) {
            inner
                .methods
                .insert(method.to_owned(), PerMethod::default());
        }
        let Some(counts) = inner.methods.get_mut(method) else {
            return;
        };
        *counts.statuses.entry(status).or_default() += 1;
        let seconds = duration.as_secs_f64();
        let histogram = &mut counts.durations;
        histogram.count += 1;
        histogram.sum += seconds;
        for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let inner = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out = String::new();
        out.push_str(
            "# HELP scl_central_requests_total Inbound API requests by method and HTTP status.\n",
        );
        out.push_str("# TYPE scl_central_requests_total counter\n");
        for (method, counts) in &inner.methods {
            let method = escape(method);
            for (status, count) in &counts.statuses {
                let _ = writeln!(
                    out,
                    "scl_central_requests_total{{method=\"{method}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str(
            "# HELP scl_central_request_duration_seconds Time to answer inbound API requests.\n",
        );
        out.push_str("# TYPE scl_central_request_duration_seconds histogram\n");
        for (method, counts) in &inner.methods {
            let method = escape(method);
            let histogram = &counts.durations;
            for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter()) {
                let _ = writeln!(
                    out,
                    "scl_central_request_duration_seconds_bucket{{method=\"{method}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "scl_central_request_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "scl_central_request_duration_seconds_sum{{method=\"{method}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "scl_central_request_duration_seconds_count{{method=\"{method}\"}} {}",
                histogram.count
            );
        }
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_buckets() {
        let metrics = Metrics::default();
        metrics.observe("Echo", 200, Duration::from_millis(2));
        metrics.observe("Echo", 200, Duration::from_millis(200));
        metrics.observe("Echo", 400, Duration::from_millis(1));
        let text = metrics.render();
        assert!(text.contains("scl_central_requests_total{method=\"Echo\",status=\"200\"} 2"));
        assert!(text.contains("scl_central_requests_total{method=\"Echo\",status=\"400\"} 1"));
        assert!(text.contains(
            "scl_central_request_duration_seconds_bucket{method=\"Echo\",le=\"0.0025\"} 2"
        ));
        assert!(text.contains("scl_central_request_duration_seconds_count{method=\"Echo\"} 3"));
    }
}
