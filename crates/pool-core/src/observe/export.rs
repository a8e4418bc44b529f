//! The Prometheus text exposition (format 0.0.4) of any number of pools'
//! [`Metrics`]: each metric family once, with one `# HELP` and one `# TYPE`
//! line, followed by every pool's samples labelled `pool="<name>"`, so that
//! several pools served from one `/metrics` endpoint make one valid scrape.
//!
//! The family names and help texts come from the tables in `metrics.rs`,
//! the same ones the `metrics` facade publishes under.

use std::fmt::{self, Write as _};

use super::metrics::{Distribution, Metrics, CLOSED, CREATED, UTILIZATION};

impl Metrics {
    /// Renders the snapshots of any number of pools as one Prometheus text
    /// exposition (format 0.0.4): every metric family once, with a single
    /// `# HELP` and `# TYPE` line, then the samples of each pool in turn,
    /// labelled `pool="<name>"`. Give the pools distinct names
    /// ([`Builder::name`](crate::Builder::name)): two snapshots with the
    /// same name would make duplicate series.
    ///
    /// Counters and gauges are one sample per pool (connections closed, one
    /// per reason). The four time distributions (`pool_acquire_seconds`,
    /// `pool_usage_seconds`, `pool_connection_create_seconds`,
    /// `pool_connection_lifetime_seconds`) are histograms: cumulative
    /// `_bucket{le="…"}` counts under the fixed bounds of
    /// [`Distribution::BUCKET_BOUNDS`] (in seconds) and `le="+Inf"`, then
    /// `_sum` (seconds) and `_count`. Histograms, unlike quantiles, can be
    /// summed across pools and instances before taking a quantile
    /// (`histogram_quantile` in PromQL); the snapshot's own quantiles stay
    /// available in [`Distribution`].
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Metrics, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let orders = Pool::builder().name("orders").max_size(2).build(M)?;
    /// let billing = Pool::builder().name("billing").max_size(1).build(M)?;
    /// drop(orders.get()?);
    /// let text = Metrics::render_prometheus(&[orders.metrics(), billing.metrics()]);
    /// let types = text.lines().filter(|l| *l == "# TYPE pool_acquire_seconds histogram");
    /// assert_eq!(types.count(), 1);
    /// assert!(text.contains("pool_connections_acquired_total{pool=\"orders\"} 1\n"));
    /// assert!(text.contains("pool_connections_acquired_total{pool=\"billing\"} 0\n"));
    /// assert!(text.contains("pool_acquire_seconds_bucket{pool=\"orders\",le=\"+Inf\"} 1\n"));
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn render_prometheus(pools: &[Metrics]) -> String {
        let mut out = String::new();
        let w = &mut out;
        let names: Vec<String> = pools.iter().map(|m| escape(&m.pool)).collect();
        let each = || pools.iter().zip(&names);
        // Only the names and help texts of this one are read.
        let proto = Metrics::default();

        header(w, CREATED, "counter");
        for (m, pool) in each() {
            sample(w, CREATED.0, pool, "", m.created as f64);
        }
        header(w, CLOSED, "counter");
        for (m, pool) in each() {
            for (reason, n) in m.closed.each() {
                let labels = format!(",reason=\"{reason}\"");
                sample(w, CLOSED.0, pool, &labels, n as f64);
            }
        }
        for (i, (name, help, _)) in proto.counter_table().into_iter().enumerate() {
            header(w, (name, help), "counter");
            for (m, pool) in each() {
                sample(w, name, pool, "", m.counter_table()[i].2 as f64);
            }
        }
        for (i, (name, help, _)) in proto.gauge_table().into_iter().enumerate() {
            header(w, (name, help), "gauge");
            for (m, pool) in each() {
                sample(w, name, pool, "", f64::from(m.gauge_table()[i].2));
            }
        }
        header(w, UTILIZATION, "gauge");
        for (m, pool) in each() {
            sample(w, UTILIZATION.0, pool, "", m.utilization);
        }
        for (i, (name, help, _)) in proto.distribution_table().into_iter().enumerate() {
            header(w, (name, help), "histogram");
            for (m, pool) in each() {
                histogram(w, name, pool, m.distribution_table()[i].2);
            }
        }
        out
    }

    /// Renders this one pool's snapshot in the Prometheus text exposition
    /// format: shorthand for [`Metrics::render_prometheus`] with one pool.
    /// To serve several pools on one endpoint, render them together with
    /// [`Metrics::render_prometheus`]: joining the texts of single pools
    /// repeats every `# TYPE` line, which makes the scrape invalid.
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let pool = Pool::builder().name("orders").max_size(2).build(M)?;
    /// drop(pool.get()?);
    /// let text = pool.metrics().to_prometheus();
    /// assert!(text.contains("pool_connections_acquired_total{pool=\"orders\"} 1\n"));
    /// assert!(text.contains("# TYPE pool_acquire_seconds histogram\n"));
    /// assert!(text.contains("pool_acquire_seconds_count{pool=\"orders\"} 1\n"));
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        Metrics::render_prometheus(std::slice::from_ref(self))
    }
}

/// Writes a family's HELP and TYPE lines.
fn header(out: &mut String, (name, help): (&str, &str), kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample; `labels` follows the pool label, with its leading comma.
fn sample(out: &mut String, name: &str, pool: &str, labels: &str, value: f64) {
    let _ = writeln!(out, "{name}{{pool=\"{pool}\"{labels}}} {}", Num(value));
}

/// Writes one pool's histogram samples: cumulative buckets, `+Inf`, sum and
/// count.
fn histogram(out: &mut String, name: &str, pool: &str, d: &Distribution) {
    for (bound, n) in Distribution::BUCKET_BOUNDS.iter().zip(d.buckets) {
        let le = format!(",le=\"{}\"", Num(bound.as_secs_f64()));
        sample(out, &format!("{name}_bucket"), pool, &le, n as f64);
    }
    sample(
        out,
        &format!("{name}_bucket"),
        pool,
        ",le=\"+Inf\"",
        d.count as f64,
    );
    sample(out, &format!("{name}_sum"), pool, "", d.sum.as_secs_f64());
    sample(out, &format!("{name}_count"), pool, "", d.count as f64);
}

/// A number as Prometheus writes it.
struct Num(f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.fract() == 0.0 && self.0.abs() < 1e15 {
            write!(f, "{}", self.0 as i64)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Escapes a label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
