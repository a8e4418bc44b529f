//! Shared plumbing: temporary directories, free ports, process supervision
//! (including the exit watchdog), readiness polling and binary discovery.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// How many bytes of a server log are quoted in error messages.
const LOG_TAIL_BYTES: u64 = 4096;
/// How many lines of a server log are quoted in error messages.
const LOG_TAIL_LINES: usize = 40;

/// Name of the file (inside a server's temporary root) that records the pid of
/// the currently running server process for the exit watchdog.
pub(crate) const PID_FILE: &str = ".ptk-server-pid";

/// The watchdog shell script.
///
/// It is started once per server instance with a pipe as stdin whose write
/// end only the test process holds. When the test process exits, however it
/// exits (normally, panic abort, SIGKILL), the pipe reaches EOF and the script
/// thaws a frozen server (`SIGCONT`), stops it, kills stragglers whose working directory is inside the
/// temporary root, removes a leaked PostgreSQL System V shared memory segment
/// and finally deletes the temporary root.
///
/// Arguments: `$1` = temporary root, `$2` = graceful stop signal name,
/// `$3` = path of a `postmaster.pid` whose shared memory segment should be
/// removed (or empty).
const WATCHDOG_SCRIPT: &str = r#"
trap '' INT HUP
dir=$1; sig=$2; pgpid=$3
while read -r _line; do :; done
alive() {
  s=$(sed -n 's/^.*) \([A-Za-z]\).*$/\1/p' "/proc/$1/stat" 2>/dev/null)
  [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}
stragglers() {
  find /proc -mindepth 2 -maxdepth 2 -name cwd \
    \( -lname "$dir" -o -lname "$dir/*" \) 2>/dev/null |
    sed -n 's|^/proc/\([0-9][0-9]*\)/cwd$|\1|p'
}
left=$(stragglers)
[ -n "$left" ] && kill -CONT $left 2>/dev/null
if [ -f "$dir/.ptk-server-pid" ]; then
  pid=$(cat "$dir/.ptk-server-pid" 2>/dev/null)
  if [ -n "$pid" ] && alive "$pid"; then
    kill -CONT "$pid" 2>/dev/null
    kill -"$sig" "$pid" 2>/dev/null
    i=0
    while alive "$pid" && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
  fi
fi
i=0
while [ $i -lt 40 ]; do
  left=$(stragglers)
  [ -z "$left" ] && break
  kill -KILL $left 2>/dev/null
  sleep 0.05; i=$((i+1))
done
if [ -n "$pgpid" ] && [ -f "$pgpid" ]; then
  set -- $(sed -n 7p "$pgpid")
  if [ -n "$2" ] && awk -v k="$1" -v i="$2" '$1==k && $2==i {f=1} END {exit !f}' /proc/sysvipc/shm 2>/dev/null; then
    ipcrm -m "$2" 2>/dev/null
  fi
fi
rm -rf "$dir"
"#;

/// Builds an `io::Error` with kind `Other` from a message.
pub(crate) fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Returns true when the current process runs as root.
pub(crate) fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// A system user to run a server as (used when we are root).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Looks up a system user by name in `/etc/passwd`, falling back to `id`.
pub(crate) fn lookup_user(name: &str) -> Option<RunAs> {
    if let Ok(passwd) = fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let mut f = line.split(':');
            if f.next() == Some(name) {
                let _pw = f.next();
                let uid = f.next().and_then(|s| s.parse().ok());
                let gid = f.next().and_then(|s| s.parse().ok());
                if let (Some(uid), Some(gid)) = (uid, gid) {
                    return Some(RunAs { uid, gid });
                }
            }
        }
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(name).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some(RunAs {
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

/// Applies `run_as` (if any) to a command: drops to that uid/gid before exec
/// (std also clears supplementary groups when root drops privileges).
pub(crate) fn apply_run_as(cmd: &mut Command, run_as: Option<RunAs>) {
    if let Some(r) = run_as {
        cmd.uid(r.uid).gid(r.gid);
    }
}

/// Creates a fresh temporary root directory `<base>/<prefix>XXXXXX`, owned by
/// `owner` when given. The directory is *not* removed automatically: the
/// owning [`Supervisor`] and its watchdog take care of that.
pub(crate) fn make_temp_root(prefix: &str, owner: Option<RunAs>) -> io::Result<PathBuf> {
    let base = match std::env::var_os("POOL_TESTKIT_TMPDIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        // Another user must be able to traverse the base directory, and
        // socket paths must stay short: /tmp is the safe choice for root.
        _ if owner.is_some() => PathBuf::from("/tmp"),
        _ => std::env::temp_dir(),
    };
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .map_err(|e| {
            other(format!(
                "cannot create a temp dir in {}: {e}",
                base.display()
            ))
        })?
        .keep();
    if let Some(o) = owner {
        std::os::unix::fs::chown(&dir, Some(o.uid), Some(o.gid))?;
    }
    Ok(dir)
}

/// Finds a free TCP port on 127.0.0.1 by binding port 0.
///
/// The port is released before returning, so a racing process could take it;
/// server start-up retries with a new port when the bind fails.
pub fn free_port() -> io::Result<u16> {
    loop {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        // Never hand out the well-known ports of the system instances.
        if port != 5432 && port != 3306 && port != 6432 {
            return Ok(port);
        }
    }
}

/// Returns true when a TCP connection to `addr` can be established.
pub(crate) fn tcp_connectable(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
}

/// Reads the last lines of a log file (best effort, never fails).
pub(crate) fn log_tail(path: &Path) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log file at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
    let mut out = lines[skip..].join("\n");
    if out.is_empty() {
        out = "(log is empty)".to_string();
    }
    out
}

/// Formats an error message followed by the tail of a log file.
pub(crate) fn with_log(msg: &str, log: &Path) -> io::Error {
    other(format!(
        "{msg}\n--- last lines of {} ---\n{}\n---",
        log.display(),
        log_tail(log)
    ))
}

/// Runs a command to completion and fails with its output if it exits non-zero.
pub(crate) fn run_checked(cmd: &mut Command, what: &str) -> io::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| other(format!("{what}: cannot run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(other(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out)
}

/// Opens (appending, creating) a log file and returns two handles usable as
/// stdout and stderr of a child.
pub(crate) fn log_stdio(path: &Path) -> io::Result<(Stdio, Stdio)> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let g = f.try_clone()?;
    Ok((Stdio::from(f), Stdio::from(g)))
}

/// Is the process `pid` alive (and not a zombie)?
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    match stat.rfind(')') {
        Some(i) => !matches!(
            stat[i + 1..].trim_start().chars().next(),
            Some('Z' | 'X') | None
        ),
        None => false,
    }
}

/// Pids of all processes whose working directory is `dir` or below it.
///
/// Every server process (PostgreSQL backends included) runs with its working
/// directory inside its temporary root, so this finds leftovers reliably
/// without trusting stale pid files.
pub fn processes_in_dir(dir: &Path) -> Vec<u32> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cwd) = fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        let cwd = cwd.to_string_lossy();
        let cwd = cwd.strip_suffix(" (deleted)").unwrap_or(&cwd);
        if cwd == prefix || cwd.starts_with(&format!("{prefix}/")) {
            pids.push(pid);
        }
    }
    pids
}

/// Sends `sig` to `pid`, ignoring errors (the process may be gone already).
pub(crate) fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Waits up to `timeout` until no process has its working directory in `dir`,
/// then SIGKILLs whatever is left and waits a little more.
pub(crate) fn reap_stragglers(dir: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let pids: Vec<u32> = processes_in_dir(dir)
            .into_iter()
            .filter(|p| pid_alive(*p))
            .collect();
        if pids.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for p in &pids {
                signal(*p, Signal::KILL);
            }
            if Instant::now() >= deadline + Duration::from_secs(3) {
                return;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Searches `PATH` plus the usual sbin/bin directories for the first of
/// `names` that exists.
pub(crate) fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    for name in names {
        for d in &dirs {
            let p = d.join(name);
            if is_executable(&p) {
                return Some(p);
            }
        }
    }
    None
}

/// Is `p` an executable regular file?
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Removes a leaked PostgreSQL System V shared memory segment recorded in a
/// `postmaster.pid` file (left behind when the postmaster was SIGKILLed).
pub(crate) fn remove_pg_shm(postmaster_pid: &Path) {
    let Ok(text) = fs::read_to_string(postmaster_pid) else {
        return;
    };
    let Some(line) = text.lines().nth(6) else {
        return;
    };
    let mut it = line.split_whitespace();
    let (Some(key), Some(id)) = (it.next(), it.next()) else {
        return;
    };
    let Ok(table) = fs::read_to_string("/proc/sysvipc/shm") else {
        return;
    };
    let present = table.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace();
        f.next() == Some(key) && f.next() == Some(id)
    });
    if present {
        let _ = Command::new("ipcrm")
            .args(["-m", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Supervises one server instance: its temporary root, the current server
/// process, and the exit watchdog.
#[derive(Debug)]
pub(crate) struct Supervisor {
    /// Temporary root (removed on drop).
    pub(crate) root: PathBuf,
    /// Log file that receives the server's stdout and stderr.
    pub(crate) log: PathBuf,
    /// Signal that triggers a quick, clean shutdown.
    stop_signal: Signal,
    /// `postmaster.pid` to clean shared memory from (PostgreSQL only).
    pg_pid_file: Option<PathBuf>,
    child: Option<Child>,
    watchdog: Option<(Child, ChildStdin)>,
}

impl Supervisor {
    /// Creates the supervisor for an existing temporary root and starts the
    /// exit watchdog for it.
    pub(crate) fn new(
        root: PathBuf,
        log_name: &str,
        stop_signal: Signal,
        stop_signal_name: &str,
        pg_pid_file: Option<PathBuf>,
    ) -> io::Result<Self> {
        let log = root.join(log_name);
        let mut sup = Supervisor {
            root,
            log,
            stop_signal,
            pg_pid_file,
            child: None,
            watchdog: None,
        };
        let pg_arg = sup
            .pg_pid_file
            .as_deref()
            .map(|p| p.as_os_str().to_owned())
            .unwrap_or_default();
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("pool-testkit-watchdog")
            .arg(&sup.root)
            .arg(stop_signal_name)
            .arg(pg_arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            // Own process group: a Ctrl-C in the terminal must not kill the
            // watchdog before it has cleaned up.
            .process_group(0)
            .spawn();
        let mut wd = match spawned {
            Ok(wd) => wd,
            Err(e) => {
                let _ = fs::remove_dir_all(&sup.root);
                return Err(other(format!("cannot start the watchdog shell: {e}")));
            }
        };
        let stdin = wd.stdin.take().expect("watchdog stdin is piped");
        sup.watchdog = Some((wd, stdin));
        Ok(sup)
    }

    /// Spawns `cmd` as the server process (stdout/stderr into the log, own
    /// process group, stdin closed) and records its pid for the watchdog.
    pub(crate) fn spawn(&mut self, cmd: &mut Command) -> io::Result<()> {
        let (out, err) = log_stdio(&self.log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| other(format!("cannot start {:?}: {e}", cmd.get_program())))?;
        let _ = fs::write(self.root.join(PID_FILE), child.id().to_string());
        self.child = Some(child);
        Ok(())
    }

    /// Pid of the running server process, if any.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True when the server process is running.
    pub(crate) fn is_running(&self) -> bool {
        self.pid().is_some_and(pid_alive)
    }

    /// If the server process has exited, reaps it and returns its status text.
    pub(crate) fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                let _ = fs::remove_file(self.root.join(PID_FILE));
                Some(status.to_string())
            }
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }

    /// Sends the graceful stop signal, waits up to `timeout`, then SIGKILLs.
    ///
    /// A frozen server (see [`crate::Frozen`]) is thawed first: it could not
    /// act on the stop signal otherwise.
    pub(crate) fn stop(&mut self, timeout: Duration) -> io::Result<()> {
        crate::faults::thaw_all(self.pid(), &self.root);
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        signal(child.id(), self.stop_signal);
        let deadline = Instant::now() + timeout;
        let mut result = Ok(());
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    result = Err(with_log(
                        &format!(
                            "server pid {} did not stop within {timeout:?}; killed it",
                            child.id()
                        ),
                        &self.log,
                    ));
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    result = Err(e);
                    break;
                }
            }
        }
        let _ = fs::remove_file(self.root.join(PID_FILE));
        result
    }

    /// SIGKILLs the server process and reaps it (its children may linger
    /// for a moment, exactly as after a real crash). Children of a frozen
    /// server are thawed after the kill, so they can notice it and exit.
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait()?;
        }
        crate::faults::thaw_all(None, &self.root);
        let _ = fs::remove_file(self.root.join(PID_FILE));
        Ok(())
    }

    /// Full cleanup: stop, kill stragglers, release shared memory, delete the
    /// root and retire the watchdog. Idempotent.
    pub(crate) fn shutdown(&mut self) {
        let _ = self.stop(Duration::from_secs(10));
        reap_stragglers(&self.root, Duration::from_secs(5));
        if let Some(p) = &self.pg_pid_file {
            remove_pg_shm(p);
        }
        let _ = fs::remove_dir_all(&self.root);
        if let Some((mut wd, stdin)) = self.watchdog.take() {
            // Everything is cleaned up already: no need to let it run.
            let _ = wd.kill();
            drop(stdin);
            let _ = wd.wait();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Polls `probe` every 50 ms until it returns `Ok(true)`, the server process
/// exits (error with log tail) or `timeout` elapses (error with log tail).
pub(crate) fn wait_ready(
    sup: &mut Supervisor,
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> bool,
) -> io::Result<()> {
    let start = Instant::now();
    loop {
        if let Some(status) = sup.exited() {
            return Err(with_log(
                &format!("{what} exited during start-up ({status})"),
                &sup.log,
            ));
        }
        if probe() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            let e = with_log(
                &format!("{what} did not become ready within {timeout:?}"),
                &sup.log,
            );
            let _ = sup.kill();
            return Err(e);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Returns true if the log mentions a port bind conflict (retry with another port).
pub(crate) fn log_says_addr_in_use(log: &Path) -> bool {
    let tail = log_tail(log);
    tail.contains("Address already in use") || tail.contains("Bind on TCP/IP port")
}

/// `OsStr` helper for building `--opt=value` arguments.
pub(crate) fn opt(name: &str, value: impl AsRef<OsStr>) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(name);
    s.push("=");
    s.push(value);
    s
}
