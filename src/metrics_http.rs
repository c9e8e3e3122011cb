//! The optional Prometheus endpoint: `GET /metrics` in the text exposition format, on
//! a loopback address only (`[metrics] listen`, off by default). Reads the same
//! counters as the `health` topic; serving a scrape never touches the audio path.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::health::{Histogram, LATENCY_BUCKETS, SourceHealth};

/// A source as the endpoint reports it.
#[derive(Debug, Clone)]
pub struct MetricSource {
    /// Source name (the `source` label).
    pub name: String,
    /// Its counters.
    pub health: Arc<SourceHealth>,
}

/// Renders every metric of `sources` in the Prometheus text format.
pub fn render(sources: &[MetricSource]) -> String {
    let mut out = String::new();
    let counter = |out: &mut String,
                   name: &str,
                   help: &str,
                   kind: &str,
                   get: &dyn Fn(&SourceHealth) -> f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in sources {
            let v = get(&s.health);
            if v.is_finite() {
                let _ = writeln!(out, "{name}{{source=\"{}\"}} {v}", s.name);
            }
        }
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    counter(
        &mut out,
        "hark_windows_total",
        "Windows embedded and scored.",
        "counter",
        &|h| load(&h.windows),
    );
    counter(
        &mut out,
        "hark_dropped_samples_total",
        "Samples the capture ring could not take.",
        "counter",
        &|h| load(&h.dropped_samples),
    );
    counter(
        &mut out,
        "hark_xruns_total",
        "Driver overruns (samples lost before the ring).",
        "counter",
        &|h| load(&h.xruns),
    );
    counter(
        &mut out,
        "hark_dropped_windows_total",
        "Windows the inference queue could not take.",
        "counter",
        &|h| load(&h.dropped_windows),
    );
    counter(
        &mut out,
        "hark_capture_reopens_total",
        "Times the input failed and was reopened.",
        "counter",
        &|h| load(&h.reopens),
    );
    counter(
        &mut out,
        "hark_capture_ok",
        "1 while the input delivers, 0 in fault.",
        "gauge",
        &|h| f64::from(u8::from(h.capture_ok.load(Ordering::Relaxed))),
    );
    counter(
        &mut out,
        "hark_storage_ok",
        "1 while the bank can be saved.",
        "gauge",
        &|h| f64::from(u8::from(h.storage_ok.load(Ordering::Relaxed))),
    );
    counter(
        &mut out,
        "hark_level_dbfs",
        "Level of the latest window.",
        "gauge",
        &|h| f64::from(h.level_dbfs()),
    );
    counter(
        &mut out,
        "hark_score",
        "Latest anomaly score (distance to the nearest normal window).",
        "gauge",
        &|h| f64::from(h.score().0),
    );
    counter(
        &mut out,
        "hark_threshold",
        "The threshold the score is held to.",
        "gauge",
        &|h| f64::from(h.score().1),
    );
    let _ = writeln!(
        out,
        "# HELP hark_stage_seconds Time per unit of work: dsp per ring chunk, inference per window.\n# TYPE hark_stage_seconds histogram"
    );
    for s in sources {
        let stages: [(&str, &Histogram); 2] = [
            ("dsp", &s.health.dsp_latency),
            ("inference", &s.health.inference_latency),
        ];
        for (stage, h) in stages {
            let (cum, sum) = h.snapshot();
            let labels = format!("source=\"{}\",stage=\"{stage}\"", s.name);
            for (b, c) in LATENCY_BUCKETS.iter().zip(&cum) {
                let _ = writeln!(out, "hark_stage_seconds_bucket{{{labels},le=\"{b}\"}} {c}");
            }
            let total = cum[LATENCY_BUCKETS.len()];
            let _ = writeln!(
                out,
                "hark_stage_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
            );
            let _ = writeln!(out, "hark_stage_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "hark_stage_seconds_count{{{labels}}} {total}");
        }
    }
    out
}

/// A running endpoint; dropping it stops the server thread.
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer").finish()
    }
}

impl MetricsServer {
    /// Binds `addr` (validated as loopback by the config) and serves `/metrics`.
    pub fn start(
        addr: std::net::SocketAddr,
        sources: Vec<MetricSource>,
    ) -> anyhow::Result<MetricsServer> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| anyhow::anyhow!("metrics.listen = \"{addr}\": cannot listen: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(200)) else {
                        continue;
                    };
                    let response = if req.url() == "/metrics" {
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4"[..],
                        )
                        .expect("a valid header");
                        tiny_http::Response::from_string(render(&sources)).with_header(header)
                    } else {
                        tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                    };
                    let _ = req.respond(response);
                }
            })?;
        tracing::info!(%addr, "metrics endpoint");
        Ok(MetricsServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let h = Arc::new(SourceHealth::new());
        h.windows.store(7, Ordering::Relaxed);
        h.inference_latency.observe(80e-6);
        h.inference_latency.observe(3e-3);
        h.inference_latency.observe(1.0);
        let text = render(&[MetricSource {
            name: "pump".into(),
            health: h,
        }]);
        assert!(
            text.contains("hark_windows_total{source=\"pump\"} 7\n"),
            "{text}"
        );
        assert!(
            !text.contains("hark_score{"),
            "no score before the first window"
        );
        let inf = "hark_stage_seconds_bucket{source=\"pump\",stage=\"inference\",le=\"+Inf\"} 3";
        assert!(text.contains(inf), "{text}");
        let le1ms = "hark_stage_seconds_bucket{source=\"pump\",stage=\"inference\",le=\"0.001\"} 1";
        assert!(text.contains(le1ms), "{text}");
        assert!(text.contains("hark_stage_seconds_count{source=\"pump\",stage=\"inference\"} 3"));
    }
}
