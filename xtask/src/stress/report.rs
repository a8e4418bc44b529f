//! The final report of a stress run: the table on stderr and the JSON file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use super::invariants::{Verdict, Window};
use super::workload::Plan;
use super::StressArgs;
use crate::util;

/// Everything the final table and the JSON file show.
pub(super) struct Report {
    pub(super) args: StressArgs,
    pub(super) seed: u64,
    pub(super) backend: String,
    pub(super) plan: Plan,
    pub(super) elapsed: Duration,
    pub(super) load_time: Duration,
    pub(super) ops: u64,
    pub(super) ops_by_phase: Vec<(&'static str, u64)>,
    pub(super) hist: Histogram<u64>,
    pub(super) counters: Vec<(&'static str, u64)>,
    pub(super) backend_counters: BTreeMap<&'static str, u64>,
    pub(super) chaos_events: Vec<(Duration, &'static str)>,
    pub(super) fail_fast_windows: Vec<Window>,
    pub(super) idle_shrink: Option<Duration>,
    pub(super) idle_state_end: (u32, Option<usize>),
    pub(super) max_open_sampled: u64,
    /// `max_size` over time: (when, phase, size), one entry per change seen.
    pub(super) sizes: Vec<(Duration, &'static str, u32)>,
    /// Changes of `max_size` up and down (`Metrics::resizes_up`/`_down`).
    pub(super) resizes: (u64, u64),
    pub(super) verdicts: Vec<Verdict>,
    pub(super) violation_messages: Vec<(&'static str, Vec<String>)>,
    pub(super) first_query_errors: Vec<String>,
}

impl Report {
    pub(super) fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    }

    pub(super) fn percentile_us(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    pub(super) fn print(&self) {
        let mut out = String::new();
        let secs = self.load_time.as_secs_f64().max(0.001);
        let _ = writeln!(out, "\nstress report ({})", self.backend);
        let _ = writeln!(
            out,
            "  seed {}, {} threads, max_size {}, min_idle {}, chaos {}, ran {}",
            self.seed,
            self.args.threads,
            self.plan.max_size,
            self.plan.min_idle,
            if self.args.chaos { "on" } else { "off" },
            util::human(self.elapsed)
        );
        let _ = writeln!(out, "  {:-<74}", "");
        let row = |out: &mut String, k: &str, v: String| {
            let _ = writeln!(out, "  {k:<40} {v}");
        };
        let borrows = self.counter("gets_ok");
        row(
            &mut out,
            "throughput (successful borrows)",
            format!(
                "{:.0}/s ({borrows} borrows, {} operations in {})",
                borrows as f64 / secs,
                self.ops,
                util::human(self.load_time)
            ),
        );
        for (phase, ops) in &self.ops_by_phase {
            row(&mut out, &format!("  ops in {phase}"), ops.to_string());
        }
        let us = |v: u64| format!("{:?}", Duration::from_micros(v));
        row(
            &mut out,
            "acquire wait p50 / p99 / p99.9 / max",
            format!(
                "{} / {} / {} / {}  ({} gets)",
                us(self.percentile_us(0.5)),
                us(self.percentile_us(0.99)),
                us(self.percentile_us(0.999)),
                us(self.hist.max()),
                self.hist.len()
            ),
        );
        for (k, v) in &self.counters {
            row(&mut out, &k.replace('_', " "), v.to_string());
        }
        let bc = |k: &str| self.backend_counters.get(k).copied().unwrap_or(0);
        row(
            &mut out,
            "connections opened / closed",
            format!("{} / {}", bc("opened"), bc("closed")),
        );
        row(
            &mut out,
            "connect attempts / failures",
            format!("{} / {}", bc("connect_attempts"), bc("connect_failures")),
        );
        row(
            &mut out,
            "resets / validations (failed)",
            format!(
                "{} / {} ({})",
                bc("resets"),
                bc("validations"),
                bc("validation_failures")
            ),
        );
        let shown = [
            "opened",
            "closed",
            "connect_attempts",
            "connect_failures",
            "resets",
            "validations",
            "validation_failures",
        ];
        let others: Vec<String> = self
            .backend_counters
            .iter()
            .filter(|(k, _)| !shown.contains(k))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !others.is_empty() {
            row(&mut out, "backend counters", others.join(", "));
        }
        if !self.chaos_events.is_empty() {
            let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
            for (_, kind) in &self.chaos_events {
                *by_kind.entry(kind).or_insert(0) += 1;
            }
            let events: Vec<String> = by_kind.iter().map(|(k, v)| format!("{k} x{v}")).collect();
            row(&mut out, "chaos events", events.join(", "));
            let timeline: Vec<String> = self
                .chaos_events
                .iter()
                .map(|(at, kind)| format!("{:.1}s {kind}", at.as_secs_f64()))
                .collect();
            row(&mut out, "  chaos timeline", timeline.join(", "));
        }
        if !self.fail_fast_windows.is_empty() {
            let longest = self
                .fail_fast_windows
                .iter()
                .map(|w| w.end - w.start)
                .max()
                .unwrap_or_default();
            let windows: Vec<String> = self
                .fail_fast_windows
                .iter()
                .take(8)
                .map(|w| {
                    format!(
                        "{:.1}s+{}ms ({})",
                        w.start.as_secs_f64(),
                        (w.end - w.start).as_millis(),
                        w.errors
                    )
                })
                .collect();
            row(
                &mut out,
                "fail-fast windows (Error::Connect)",
                format!(
                    "{}, longest {}ms: {}",
                    self.fail_fast_windows.len(),
                    longest.as_millis(),
                    windows.join(", ")
                ),
            );
        }
        row(
            &mut out,
            "idle phase: shrank to min_idle",
            match self.idle_shrink {
                Some(d) => format!(
                    "yes, after {} (idle_timeout {})",
                    util::human(d),
                    util::human(self.plan.idle_timeout)
                ),
                None => format!(
                    "NO (pool total {}, db open {} at the end; note only)",
                    self.idle_state_end.0,
                    self.idle_state_end
                        .1
                        .map_or("?".to_owned(), |n| n.to_string())
                ),
            },
        );
        if let Some(a) = &self.plan.adaptive {
            row(
                &mut out,
                "adaptive sizing: resizes up / down",
                format!(
                    "{} / {} (floor {}, ceiling {}, window {})",
                    self.resizes.0,
                    self.resizes.1,
                    a.floor,
                    a.ceiling,
                    util::human(a.window)
                ),
            );
            row(&mut out, "  max_size over time", self.size_timeline());
        }
        let _ = writeln!(out, "  {:-<74}", "");
        for v in &self.verdicts {
            let _ = writeln!(
                out,
                "  [{}] {}: {}",
                if v.ok { "PASS" } else { "FAIL" },
                v.name,
                v.detail
            );
        }
        for (kind, messages) in &self.violation_messages {
            let _ = writeln!(out, "  first {kind} violations:");
            for m in messages {
                let _ = writeln!(out, "    - {m}");
            }
        }
        if !self.first_query_errors.is_empty() {
            let _ = writeln!(out, "  first query errors (note only):");
            for m in &self.first_query_errors {
                let _ = writeln!(out, "    - {m}");
            }
        }
        eprint!("{out}");
    }

    /// `0.0s ramp-up 2, 3.4s steady 4, ...`.
    fn size_timeline(&self) -> String {
        let entries: Vec<String> = self
            .sizes
            .iter()
            .map(|(at, phase, size)| format!("{:.1}s {phase} {size}", at.as_secs_f64()))
            .collect();
        entries.join(", ")
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        json!({
            "seed": self.seed,
            "backend": self.backend,
            "threads": self.args.threads,
            "pool": {
                "max_size": self.plan.max_size,
                "min_idle": self.plan.min_idle,
                "connection_timeout_ms": ms(self.plan.connection_timeout),
                "idle_timeout_ms": ms(self.plan.idle_timeout),
                "max_lifetime_ms": ms(self.plan.max_lifetime),
                "keepalive_time_ms": ms(self.plan.keepalive_time),
            },
            "chaos": self.args.chaos,
            "duration_s": self.args.duration.as_secs_f64(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput_borrows_per_s": self.counter("gets_ok") as f64 / self.load_time.as_secs_f64().max(0.001),
            "ops_per_s": self.ops as f64 / self.load_time.as_secs_f64().max(0.001),
            "ops": self.ops,
            "ops_by_phase": self.ops_by_phase.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "acquire_wait_us": {
                "count": self.hist.len(),
                "p50": self.percentile_us(0.5),
                "p99": self.percentile_us(0.99),
                "p99_9": self.percentile_us(0.999),
                "max": self.hist.max(),
                "mean": self.hist.mean(),
            },
            "counters": self.counters.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "backend_counters": self.backend_counters,
            "chaos_events": self.chaos_events.iter().map(|(at, kind)| json!({
                "at_s": at.as_secs_f64(),
                "event": kind,
            })).collect::<Vec<_>>(),
            "fail_fast_windows": self.fail_fast_windows.iter().map(|w| json!({
                "start_s": w.start.as_secs_f64(),
                "end_s": w.end.as_secs_f64(),
                "errors": w.errors,
            })).collect::<Vec<_>>(),
            "idle_shrink_ms": self.idle_shrink.map(ms),
            "max_open_sampled": self.max_open_sampled,
            "adaptive": self.plan.adaptive.as_ref().map(|a| json!({
                "floor": a.floor,
                "ceiling": a.ceiling,
                "window_ms": ms(a.window),
                "resizes_up": self.resizes.0,
                "resizes_down": self.resizes.1,
                "max_size_over_time": self.sizes.iter().map(|(at, phase, size)| json!({
                    "at_s": at.as_secs_f64(),
                    "phase": phase,
                    "max_size": size,
                })).collect::<Vec<_>>(),
            })),
            "invariants": self.verdicts.iter().map(|v| json!({
                "name": v.name,
                "ok": v.ok,
                "detail": v.detail,
            })).collect::<Vec<_>>(),
            "violations": self.violation_messages.iter().map(|(k, m)| (k.to_string(), json!(m))).collect::<serde_json::Map<_, _>>(),
            "first_query_errors": self.first_query_errors,
            "ok": self.verdicts.iter().all(|v| v.ok),
        })
    }
}
