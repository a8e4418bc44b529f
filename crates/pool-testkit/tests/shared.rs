//! Process-wide shared servers, and the exit watchdog: servers started by a
//! process that dies without dropping them (SIGKILL, or a normal exit with
//! servers in statics / forgotten) are stopped and their directories removed.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pool_testkit::{MariaDbServer, PgBouncer, PgServer, PoolMode};

const CHILD_ENV: &str = "POOL_TESTKIT_WATCHDOG_CHILD";

fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
    }
}

fn all_available() -> Result<(), String> {
    PgServer::binaries_available()?;
    MariaDbServer::binaries_available()?;
    PgBouncer::binaries_available()
}

#[test]
fn shared_servers_are_started_once() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let pg = pool_testkit::shared_pg().unwrap();
    assert!(std::ptr::eq(pg, pool_testkit::shared_pg().unwrap()));
    assert_eq!(pg.run_sql("SELECT 1").unwrap(), "1");
    let my = pool_testkit::shared_mariadb().unwrap();
    assert!(std::ptr::eq(my, pool_testkit::shared_mariadb().unwrap()));
    assert_eq!(my.run_sql("SELECT 1").unwrap(), "1");
}

#[test]
fn shared_pg_from_many_threads() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let ports: Vec<u16> = (0..4)
        .map(|_| std::thread::spawn(|| pool_testkit::shared_pg().unwrap().port()))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(ports.windows(2).all(|w| w[0] == w[1]));
}

/// Not a real test: the body of the child process used below. Does nothing
/// unless the environment variable is set.
#[test]
fn child_process_helper() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut out = std::io::stdout();
    // Start in parallel to keep the test short.
    let my = std::thread::spawn(|| pool_testkit::shared_mariadb().unwrap());
    let forgotten = std::thread::spawn(|| PgServer::start().unwrap());
    let pg = pool_testkit::shared_pg().unwrap();
    let bouncer = PgBouncer::start(pg, PoolMode::Transaction).unwrap();
    let my = my.join().unwrap();
    let forgotten = forgotten.join().unwrap();
    for (pid, root) in [
        (pg.pid(), pg.root_dir()),
        (my.pid(), my.root_dir()),
        (bouncer.pid(), bouncer.root_dir()),
        (forgotten.pid(), forgotten.root_dir()),
    ] {
        writeln!(out, "PTK {} {}", pid.unwrap(), root.display()).unwrap();
    }
    std::mem::forget(bouncer);
    std::mem::forget(forgotten);
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    if mode == "kill" {
        // Wait to be SIGKILLed by the parent.
        std::thread::sleep(Duration::from_secs(60));
    }
    // mode "exit": return, and the test binary exits without running any
    // destructor for the statics or the forgotten servers.
}

/// Kills the child process if the test fails half-way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_child_and_check(mode: &str) {
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let mut servers: Vec<(u32, PathBuf)> = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.ends_with("READY") {
            break;
        }
        // libtest may print "test child_process_helper ... " on the same line.
        if let Some(at) = line.find("PTK ") {
            let (pid, root) = line[at + 4..].split_once(' ').unwrap();
            servers.push((pid.parse().unwrap(), PathBuf::from(root)));
        }
    }
    assert_eq!(servers.len(), 4, "child did not start its servers");
    for (pid, root) in &servers {
        assert!(!gone(*pid) && root.exists());
    }
    if mode == "kill" {
        child.kill().unwrap();
    }
    // Keep reading so the child never writes into a closed pipe.
    lines.for_each(drop);
    let status = child.wait().unwrap();
    if mode == "exit" {
        assert!(status.success());
    }
    let t = Instant::now();
    loop {
        let left: Vec<_> = servers
            .iter()
            .filter(|(pid, root)| {
                !gone(*pid) || root.exists() || !pool_testkit::processes_in_dir(root).is_empty()
            })
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "not cleaned up after the test process died: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("watchdog ({mode}) cleaned up in {:?}", t.elapsed());
}

#[test]
fn watchdog_cleans_up_after_sigkill() {
    pool_testkit::require_or_skip!(all_available());
    run_child_and_check("kill");
}

#[test]
fn watchdog_cleans_up_after_exit_without_drop() {
    pool_testkit::require_or_skip!(all_available());
    run_child_and_check("exit");
}
