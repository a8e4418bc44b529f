//! The leak task's own [`log::Log`]: it captures the pool's log records while
//! a scenario listens (a [`Recording`]), so that scenarios 1 and 2 can check
//! the leak warnings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};
use parking_lot::Mutex;

/// One log record, as captured.
#[derive(Debug, Clone)]
pub(super) struct Captured {
    /// The record's level.
    pub(super) level: Level,
    /// The formatted message.
    pub(super) message: String,
}

/// The task's logger: keeps INFO-and-above records while a [`Recording`]
/// listens, and ignores everything otherwise (so the cycles of scenario 5
/// neither pay for formatting nor grow a buffer).
pub(super) struct CaptureLogger {
    /// Whether a [`Recording`] listens.
    pub(super) armed: AtomicBool,
    /// The records kept since the current recording started.
    pub(super) records: Mutex<Vec<Captured>>,
}

/// The one instance, installed by [`install_logger`].
pub(super) static LOGGER: CaptureLogger = CaptureLogger {
    armed: AtomicBool::new(false),
    records: parking_lot::const_mutex(Vec::new()),
};

impl Log for CaptureLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.armed.load(Ordering::Acquire) && metadata.level() <= Level::Info
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let message = record.args().to_string();
            self.records.lock().push(Captured {
                level: record.level(),
                message,
            });
        }
    }

    fn flush(&self) {}
}

/// Installs [`LOGGER`] as the process's logger, once; fails (every time) if
/// another logger was installed first.
pub(super) fn install_logger() -> std::result::Result<(), String> {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    if *INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok()) {
        Ok(())
    } else {
        Err(
            "cannot capture the pool's log records: another logger is already installed in \
             this process (the leaks task must install its own)"
                .into(),
        )
    }
}

/// Captures the log records of one pool while it lives.
pub(super) struct Recording {
    /// How the pool's messages start: `pool "<name>": `.
    pub(super) prefix: String,
}

impl Recording {
    /// Starts capturing the records of the pool named `pool`.
    pub(super) fn start(pool: &str) -> std::result::Result<Recording, String> {
        install_logger()?;
        LOGGER.records.lock().clear();
        LOGGER.armed.store(true, Ordering::Release);
        log::set_max_level(LevelFilter::Info);
        Ok(Recording {
            prefix: format!("pool \"{pool}\": "),
        })
    }

    /// This pool's records at `level` so far.
    pub(super) fn at(&self, level: Level) -> Vec<String> {
        LOGGER
            .records
            .lock()
            .iter()
            .filter(|r| r.level == level && r.message.starts_with(&self.prefix))
            .map(|r| r.message.clone())
            .collect()
    }

    /// This pool's records at `level` that contain `needle`.
    pub(super) fn matching(&self, level: Level, needle: &str) -> Vec<String> {
        let mut found = self.at(level);
        found.retain(|m| m.contains(needle));
        found
    }

    /// Waits up to `timeout` for a record at `level` containing `needle`.
    pub(super) fn wait_for(&self, level: Level, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.matching(level, needle).is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        LOGGER.armed.store(false, Ordering::Release);
        log::set_max_level(LevelFilter::Off);
        LOGGER.records.lock().clear();
    }
}
