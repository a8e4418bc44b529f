//! The process itself, as the stress and leak tasks watch it: its threads,
//! open descriptors, resident memory and CPU wait from `/proc`, and a panic
//! hook that keeps the tasks' deliberate panics quiet.

use std::panic;
use std::sync::Arc;
use std::time::Duration;

/// The number of threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// The names of this process's threads.
pub fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    names.sort();
    names
}

/// Whether a thread name as `/proc` shows it (`comm`, cut to 15 bytes) is
/// `name`.
pub(crate) fn thread_name_matches(name: &str, comm: &str) -> bool {
    let cut = name.len().min(15);
    name.get(..cut) == Some(comm)
}

/// How long the calling thread has waited for a CPU (runnable but not
/// running) since it started: the second field of
/// `/proc/thread-self/schedstat`. None where the kernel does not provide it.
pub(crate) fn run_delay() -> Option<Duration> {
    schedstat(1)
}

/// Field `index` of the calling thread's `/proc/thread-self/schedstat`
/// (0: time on a CPU, 1: time waiting for one), in nanoseconds.
pub(crate) fn schedstat(index: usize) -> Option<Duration> {
    use std::os::unix::fs::FileExt;
    thread_local! {
        /// This thread's schedstat file, opened on first use (the path names
        /// the thread that opens it).
        static SCHEDSTAT: Option<std::fs::File> =
            std::fs::File::open("/proc/thread-self/schedstat").ok();
    }
    SCHEDSTAT.with(|file| {
        let mut buf = [0u8; 96];
        // A positioned read at 0 makes the kernel render the file afresh.
        let n = file.as_ref()?.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let nanos = text.split_whitespace().nth(index)?.parse().ok()?;
        Some(Duration::from_nanos(nanos))
    })
}

/// The marker payload of the deliberate panics, which the panic hook keeps quiet.
pub(crate) struct StressPanic;

/// Runs `f` with a panic hook that keeps the deliberate [`StressPanic`]s
/// quiet and passes every other panic to the previous hook, then puts the
/// previous hook back.
pub(crate) fn with_quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    let previous = Arc::new(panic::take_hook());
    {
        let previous = previous.clone();
        panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<StressPanic>().is_none() {
                previous(info);
            }
        }));
    }
    let result = f();
    drop(panic::take_hook());
    if let Ok(previous) = Arc::try_unwrap(previous) {
        panic::set_hook(previous);
    }
    result
}

/// Open file descriptors of this process (entries of `/proc/self/fd`).
pub(crate) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident memory of this process in KiB, from `/proc/self/status`.
pub(crate) fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn thread_names_match_their_cut_comm() {
        assert!(thread_name_matches("pool-postgres-io", "pool-postgres-i"));
        assert!(thread_name_matches("pool-mysql-io", "pool-mysql-io"));
        assert!(!thread_name_matches("pool-mysql-io", "pool-mysql"));
        assert!(!thread_name_matches("pool-postgres-io", "stress-1"));
    }

    #[test]
    fn schedstat_is_read_afresh_each_time() {
        let Some(before) = schedstat(0) else {
            // Kernels without schedstats: the get check falls back.
            return;
        };
        assert!(run_delay().is_some());
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {}
        // The CPU time went up: the file was not served from a cache.
        assert!(schedstat(0).is_some_and(|after| after > before));
    }
}
