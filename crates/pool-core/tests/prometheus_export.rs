//! The Prometheus text exposition of several pools together: it parses with
//! a real parser (`prometheus-parse`, and `promtool` when installed), declares
//! each family once, and its histograms are cumulative and end with `+Inf`
//! equal to `_count`.

mod common;

use common::TestManager;
use pool_core::{Distribution, Metrics, Pool};
use prometheus_parse::{LineInfo, Scrape, Value};
use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::Duration;

/// Two busy-enough pools: connects that take time, loans of a few
/// milliseconds, a borrower that waits.
fn two_pools() -> Vec<Metrics> {
    let orders = Pool::builder()
        .name("orders")
        .max_size(1)
        .build(TestManager::with_connect_delay(2))
        .unwrap();
    let billing = Pool::builder()
        .name("bill\"ing\\")
        .max_size(2)
        .build(TestManager::new())
        .unwrap();
    let held = orders.get().unwrap();
    let waiter = {
        let orders = orders.clone();
        thread::spawn(move || drop(orders.get().unwrap()))
    };
    thread::sleep(Duration::from_millis(5));
    drop(held);
    waiter.join().unwrap();
    for _ in 0..3 {
        let c = billing.get().unwrap();
        thread::sleep(Duration::from_millis(2));
        drop(c);
    }
    vec![orders.metrics(), billing.metrics()]
}

/// The checks the exposition format makes that `prometheus-parse` leaves
/// out: one HELP and one TYPE per family, HELP and TYPE before its samples,
/// a family's samples together (no family comes back later), no series
/// twice. Returns the families and their types.
fn check_structure(text: &str) -> Result<HashMap<String, String>, String> {
    let mut types = HashMap::new();
    let mut helps = HashSet::new();
    let mut series = HashSet::new();
    let mut current: Option<(String, String)> = None;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            if !helps.insert(name.clone()) {
                return Err(format!("second HELP for {name}"));
            }
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE: {l}"))?;
            if !helps.contains(name) {
                return Err(format!("TYPE without HELP before it: {name}"));
            }
            if types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(format!("second TYPE for {name}"));
            }
            current = Some((name.to_string(), kind.to_string()));
        } else {
            let (family, kind) = current.as_ref().ok_or(format!("sample before TYPE: {l}"))?;
            let (key, _value) = l.rsplit_once(' ').ok_or(format!("bad sample: {l}"))?;
            let name = key.split('{').next().unwrap();
            let ok = match kind.as_str() {
                "histogram" => [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .contains(&name.to_string()),
                _ => name == family,
            };
            if !ok {
                return Err(format!("{name} outside its family (in {family}): {l}"));
            }
            if !series.insert(key.to_string()) {
                return Err(format!("series twice: {key}"));
            }
        }
    }
    Ok(types)
}

#[test]
fn two_pools_render_as_one_valid_exposition() {
    let pools = two_pools();
    let text = Metrics::render_prometheus(&pools);

    // Every line is one the parser understands (it skips the others quietly).
    for l in text.lines() {
        assert!(
            !matches!(LineInfo::parse(l), LineInfo::Ignored | LineInfo::Empty),
            "unparsed line {l:?}"
        );
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let types = check_structure(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        types.get("pool_acquire_seconds").map(String::as_str),
        Some("histogram")
    );
    for family in [
        "pool_usage_seconds",
        "pool_connection_create_seconds",
        "pool_connection_lifetime_seconds",
    ] {
        assert_eq!(types[family], "histogram", "{family}");
    }
    assert_eq!(types["pool_connections_created_total"], "counter");
    assert_eq!(types["pool_utilization_ratio"], "gauge");
    assert_eq!(scrape.docs.len(), types.len());

    // Both pools are there, told apart by the label (which
    // prometheus-parse hands back still escaped).
    let pool_of = |s: &prometheus_parse::Sample| s.labels.get("pool").map(str::to_string);
    let named: HashSet<_> = scrape.samples.iter().filter_map(pool_of).collect();
    assert!(named.contains("orders"), "{named:?}");
    assert!(named.contains("bill\\\"ing\\\\"), "{named:?}");

    // Histograms: bounds rising, counts cumulative, +Inf last and equal to
    // _count; one per pool and family.
    let counts: HashMap<(String, String), f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric.ends_with("_count"))
        .map(|s| {
            let v = match s.value {
                Value::Untyped(v) | Value::Counter(v) | Value::Gauge(v) => v,
                _ => panic!("{s:?}"),
            };
            let family = s.metric.trim_end_matches("_count").to_string();
            ((family, pool_of(s).unwrap()), v)
        })
        .collect();
    let mut histograms = 0;
    for s in &scrape.samples {
        let Value::Histogram(buckets) = &s.value else {
            continue;
        };
        histograms += 1;
        assert_eq!(buckets.len(), Distribution::BUCKET_BOUNDS.len() + 1);
        for (pair, bound) in buckets.windows(2).zip(Distribution::BUCKET_BOUNDS) {
            assert_eq!(pair[0].less_than, bound.as_secs_f64(), "{}", s.metric);
            assert!(pair[0].less_than < pair[1].less_than, "{s:?}");
            assert!(pair[0].count <= pair[1].count, "not cumulative: {s:?}");
        }
        let last = buckets.last().unwrap();
        assert_eq!(last.less_than, f64::INFINITY);
        assert_eq!(
            Some(&last.count),
            counts.get(&(s.metric.clone(), pool_of(s).unwrap())),
            "+Inf vs _count: {s:?}"
        );
    }
    assert_eq!(histograms, 4 * pools.len());

    // The waits and loans were counted (both waits well under a minute).
    let orders = &pools[0];
    assert_eq!(orders.acquire_wait.count, 2);
    let at = |d: &Duration| Distribution::BUCKET_BOUNDS.iter().position(|b| b == d);
    let wait = &orders.acquire_wait.buckets;
    assert_eq!(wait[at(&Duration::from_secs(60)).unwrap()], 2, "{wait:?}");
    assert_eq!(pools[1].usage.count, 3);
    assert!(pools[1].usage.sum >= Duration::from_millis(3));
}

#[test]
fn joined_single_pool_texts_are_what_the_check_rejects() {
    // What the issue reported: each pool's text on its own repeats the
    // families, so joining them is not one exposition.
    let pools = two_pools();
    let joined: String = pools.iter().map(Metrics::to_prometheus).collect();
    let err = check_structure(&joined).unwrap_err();
    assert!(err.starts_with("second HELP for"), "{err}");
    // Each one alone, and all together, are fine.
    for m in &pools {
        check_structure(&m.to_prometheus()).unwrap();
    }
    check_structure(&Metrics::render_prometheus(&pools)).unwrap();
    // No pools: the families, no samples.
    let empty = Metrics::render_prometheus(&[]);
    assert!(check_structure(&empty).is_ok());
    assert!(empty.lines().all(|l| l.starts_with('#')));
}

#[test]
fn promtool_accepts_two_pools_when_installed() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("skipped: promtool is not installed (the prometheus-parse checks still ran)");
        return;
    };
    let text = Metrics::render_prometheus(&two_pools());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // `promtool check metrics` exits 1 for lint warnings too (such as
    // counters whose names lack `_total`); only an exit status beyond
    // that, or a parse error, means an invalid exposition.
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.code() == Some(0) || !said.contains("error while linting"),
        "promtool: {said}\n{text}"
    );
}
