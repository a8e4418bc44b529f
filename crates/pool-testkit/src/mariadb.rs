//! Throwaway MariaDB servers.

use std::fs;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rustix::process::Signal;

use crate::faults::{self, Frozen};
use crate::util::{self, opt, other, RunAs, Supervisor};

/// Name of the password-authenticated user created in every [`MariaDbServer`]
/// (for hosts `%`, `127.0.0.1` and `localhost`).
pub const MARIADB_USER: &str = "pool_test";
/// Password of [`MARIADB_USER`].
pub const MARIADB_PASSWORD: &str = "pool_test_pw";
/// Database on which [`MARIADB_USER`] has all privileges.
pub const MARIADB_DATABASE: &str = "pool_test";

/// The per-account limit of [`MARIADB_USER`] when none is set: MariaDB counts
/// an account's sessions only when they log in while the account has a
/// limit, so "no limit" is a limit no test reaches, and a limit set later
/// with [`MariaDbServer::set_connection_limit`] counts every open session.
const UNLIMITED_BUT_COUNTED: u32 = 1_000_000;

/// Default `max_connections` of a harness MariaDB server.
const DEFAULT_MAX_CONNECTIONS: u32 = 200;
/// How often start-up is retried with a new port when the port was taken.
const PORT_ATTEMPTS: usize = 4;

/// Locations of the MariaDB binaries.
#[derive(Clone, Debug)]
struct MariaDbBinaries {
    install_db: PathBuf,
    server: PathBuf,
    client: PathBuf,
}

fn mariadb_binaries() -> Result<MariaDbBinaries, String> {
    static FOUND: OnceLock<Result<MariaDbBinaries, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let install_db = util::find_binary(&["mariadb-install-db", "mysql_install_db"]);
            let server = util::find_binary(&["mariadbd", "mysqld"]);
            let client = util::find_binary(&["mariadb", "mysql"]);
            match (install_db, server, client) {
                (Some(install_db), Some(server), Some(client)) => Ok(MariaDbBinaries {
                    install_db,
                    server,
                    client,
                }),
                (i, s, c) => {
                    let mut missing = Vec::new();
                    if i.is_none() {
                        missing.push("mariadb-install-db");
                    }
                    if s.is_none() {
                        missing.push("mariadbd");
                    }
                    if c.is_none() {
                        missing.push("mariadb (client)");
                    }
                    Err(format!(
                        "MariaDB binaries not found: {}; install the Debian package \
                         `mariadb-server` (apt-get install mariadb-server)",
                        missing.join(", ")
                    ))
                }
            }
        })
        .clone()
}

/// How the server process is run when we are root: as the `mysql` user if it
/// exists, otherwise as root with `--user=root`.
#[derive(Clone, Copy, Debug)]
enum Identity {
    Current,
    As(RunAs),
    RootWithUserRoot,
}

impl Identity {
    fn detect() -> Identity {
        if !util::is_root() {
            Identity::Current
        } else if let Some(r) = util::lookup_user("mysql") {
            Identity::As(r)
        } else {
            Identity::RootWithUserRoot
        }
    }
    fn run_as(self) -> Option<RunAs> {
        match self {
            Identity::As(r) => Some(r),
            _ => None,
        }
    }
    fn apply(self, cmd: &mut Command) {
        match self {
            Identity::As(r) => util::apply_run_as(cmd, Some(r)),
            Identity::RootWithUserRoot => {
                cmd.arg("--user=root");
            }
            Identity::Current => {}
        }
    }
}

/// Configures and starts a [`MariaDbServer`]; obtain one with [`MariaDbServer::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct MariaDbServerBuilder {
    max_connections: u32,
    extra_args: Vec<String>,
    startup_timeout: Duration,
}

impl Default for MariaDbServerBuilder {
    fn default() -> Self {
        MariaDbServerBuilder {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            extra_args: Vec::new(),
            startup_timeout: Duration::from_secs(60),
        }
    }
}

impl MariaDbServerBuilder {
    /// Sets `--max-connections` (default 200).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Appends a raw `mariadbd` option, e.g. `"--wait-timeout=2"`. Later
    /// options override the harness defaults.
    pub fn server_arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Sets how long start-up may take before it fails (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Serves TLS with `certs`' server certificate (clients may still
    /// connect in the clear unless they require TLS).
    pub fn tls(self, certs: &crate::TestCertificates) -> Self {
        self.server_arg(format!("--ssl-cert={}", certs.server_cert_path().display()))
            .server_arg(format!("--ssl-key={}", certs.server_key_path().display()))
    }

    /// Initialises a data directory, starts the server on a free port and
    /// creates [`MARIADB_USER`] and [`MARIADB_DATABASE`].
    pub fn start(self) -> io::Result<MariaDbServer> {
        MariaDbServer::start_with(self)
    }
}

/// A throwaway MariaDB server in its own temporary directory, listening on a
/// free port on 127.0.0.1 and on a Unix socket inside that directory.
///
/// Dropping it stops the server (SIGTERM, then SIGKILL) and deletes the
/// directory; should the test process die without dropping it, a watchdog
/// does the same.
#[derive(Debug)]
pub struct MariaDbServer {
    sup: Supervisor,
    bins: MariaDbBinaries,
    identity: Identity,
    data_dir: PathBuf,
    socket: PathBuf,
    port: u16,
    max_connections: u32,
    extra_args: Vec<String>,
    startup_timeout: Duration,
}

/// Options shared by `mariadb-install-db` and `mariadbd` (must match, e.g.
/// for the redo log size).
///
/// `--innodb-flush-log-at-trx-commit=2` writes the redo log to the OS at each
/// commit without fsync: nearly as fast as `0`, but committed data survives a
/// SIGKILL of the server ([`MariaDbServer::kill`]), which `0` does not.
///
/// Nothing is ever fsynced (`--debug-no-sync`, `nosync`, no doublewrite
/// buffer): data survives a server crash but not an OS crash, which is fine
/// for tests and makes `mariadb-install-db` several times faster on a busy
/// machine. The `loose-` prefix keeps versions without an option working.
const COMMON_ARGS: &[&str] = &[
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=16M",
    "--innodb-use-native-aio=0",
    "--innodb-doublewrite=0",
    "--loose-debug-no-sync",
    "--loose-skip-sync-frm",
    "--loose-aria-sync-log-dir=NEVER",
    "--loose-innodb-flush-method=nosync",
    "--innodb-buffer-pool-dump-at-shutdown=0",
    "--innodb-buffer-pool-load-at-startup=0",
    "--innodb-flush-log-at-trx-commit=2",
    "--sync-binlog=0",
    "--skip-log-bin",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
];

impl MariaDbServer {
    /// Starts a server with default settings (see [`MariaDbServerBuilder`]).
    pub fn start() -> io::Result<MariaDbServer> {
        MariaDbServer::builder().start()
    }

    /// Returns a builder for a customised server.
    pub fn builder() -> MariaDbServerBuilder {
        MariaDbServerBuilder::default()
    }

    /// Checks that the binaries needed to start a server are installed.
    ///
    /// The error names the missing Debian package (`mariadb-server`).
    pub fn binaries_available() -> Result<(), String> {
        mariadb_binaries().map(|_| ())
    }

    fn start_with(b: MariaDbServerBuilder) -> io::Result<MariaDbServer> {
        let bins = mariadb_binaries().map_err(other)?;
        let identity = Identity::detect();
        let root = util::make_temp_root("ptk-my-", identity.run_as())?;
        let sup = Supervisor::new(root.clone(), "mariadbd.log", Signal::TERM, "TERM", None)?;
        let mut server = MariaDbServer {
            sup,
            bins,
            identity,
            data_dir: root.join("data"),
            socket: root.join("mysqld.sock"),
            port: 0,
            max_connections: b.max_connections,
            extra_args: b.extra_args,
            startup_timeout: b.startup_timeout,
        };
        let tmp = root.join("tmp");
        fs::create_dir(&tmp)?;
        if let Some(r) = identity.run_as() {
            std::os::unix::fs::chown(&tmp, Some(r.uid), Some(r.gid))?;
        }
        server.install_db()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = util::free_port()?;
            match server.spawn_and_wait() {
                Ok(()) => break,
                Err(_)
                    if attempt < PORT_ATTEMPTS && util::log_says_addr_in_use(&server.sup.log) =>
                {
                    let _ = fs::write(&server.sup.log, b"");
                }
                Err(e) => return Err(e),
            }
        }
        let u = MARIADB_USER;
        let p = MARIADB_PASSWORD;
        let d = MARIADB_DATABASE;
        server.run_sql(&format!(
            "CREATE DATABASE `{d}`;\n\
             CREATE USER '{u}'@'%' IDENTIFIED BY '{p}';\n\
             CREATE USER '{u}'@'127.0.0.1' IDENTIFIED BY '{p}';\n\
             CREATE USER '{u}'@'localhost' IDENTIFIED BY '{p}';\n\
             GRANT ALL PRIVILEGES ON `{d}`.* TO '{u}'@'%';\n\
             GRANT ALL PRIVILEGES ON `{d}`.* TO '{u}'@'127.0.0.1';\n\
             GRANT ALL PRIVILEGES ON `{d}`.* TO '{u}'@'localhost';\n\
             ALTER USER '{u}'@'%', '{u}'@'127.0.0.1', '{u}'@'localhost' \
             WITH MAX_USER_CONNECTIONS {UNLIMITED_BUT_COUNTED};\n\
             CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n\
             FLUSH PRIVILEGES;"
        ))?;
        Ok(server)
    }

    fn install_db(&self) -> io::Result<()> {
        let mut cmd = Command::new(&self.bins.install_db);
        cmd.arg("--no-defaults")
            .arg(opt("--datadir", &self.data_dir))
            .arg(opt("--tmpdir", self.sup.root.join("tmp")))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .args(COMMON_ARGS)
            .current_dir(&self.sup.root)
            .env("HOME", &self.sup.root);
        self.identity.apply(&mut cmd);
        let log = self.sup.root.join("install-db.log");
        let (out, err) = util::log_stdio(&log)?;
        let status = cmd
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| {
                other(format!(
                    "cannot run {}: {e}",
                    self.bins.install_db.display()
                ))
            })?;
        if !status.success() {
            return Err(util::with_log(
                &format!("{} failed ({status})", self.bins.install_db.display()),
                &log,
            ));
        }
        Ok(())
    }

    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let mut cmd = Command::new(&self.bins.server);
        cmd.arg("--no-defaults")
            .arg(opt("--datadir", &self.data_dir))
            .arg(opt("--socket", &self.socket))
            .arg(opt("--pid-file", self.sup.root.join("mariadbd.pid")))
            .arg(opt("--tmpdir", self.sup.root.join("tmp")))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg(format!("--max-connections={}", self.max_connections))
            .args(COMMON_ARGS)
            .args(&self.extra_args)
            .current_dir(&self.data_dir)
            .env("HOME", &self.sup.root);
        self.identity.apply(&mut cmd);
        self.sup.spawn(&mut cmd)?;
        let addr = self.addr();
        util::wait_ready(&mut self.sup, "mariadbd", self.startup_timeout, || {
            handshake_ok(addr)
        })
    }

    /// URL for the password user: `mysql://pool_test:pool_test_pw@127.0.0.1:PORT/pool_test`.
    pub fn url(&self) -> String {
        self.url_with_password(MARIADB_PASSWORD)
    }

    /// Like [`url`](Self::url) but with another password (for "wrong password" tests).
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "mysql://{MARIADB_USER}:{password}@127.0.0.1:{}/{MARIADB_DATABASE}",
            self.port
        )
    }

    /// URL for the password user, but pointing at `addr` instead of the
    /// server, e.g. a [`FaultProxy`](crate::FaultProxy) in front of it.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        format!("mysql://{MARIADB_USER}:{MARIADB_PASSWORD}@{addr}/{MARIADB_DATABASE}")
    }

    /// Root URL (no password): `mysql://root@127.0.0.1:PORT/pool_test`.
    pub fn root_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/{MARIADB_DATABASE}", self.port)
    }

    /// TCP port the server listens on (stays the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// Path of the server's Unix socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The data directory (inside the temporary root).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temporary root (data dir, socket, log); deleted on drop.
    pub fn root_dir(&self) -> &Path {
        &self.sup.root
    }

    /// Path of the server log (mariadbd's stderr).
    pub fn log_path(&self) -> &Path {
        &self.sup.log
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        util::log_tail(&self.sup.log)
    }

    /// Pid of mariadbd, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.sup.pid()
    }

    /// True when the mariadbd process is alive.
    pub fn is_running(&self) -> bool {
        self.sup.is_running()
    }

    /// Freezes the server with `SIGSTOP` (mariadbd is one process). The
    /// listening socket stays open, so new TCP connections are accepted by
    /// the kernel but never greeted; established sessions stop answering too.
    /// Stays frozen until [`thaw`](Self::thaw), [`stop`](Self::stop) or drop;
    /// prefer [`freeze_guard`](Self::freeze_guard), which thaws even when the
    /// test panics.
    ///
    /// ```no_run
    /// let db = pool_testkit::MariaDbServer::start().unwrap();
    /// db.freeze().unwrap();
    /// // ... connects and queries hang here ...
    /// db.thaw().unwrap();
    /// assert_eq!(db.run_sql("SELECT 1").unwrap(), "1");
    /// ```
    pub fn freeze(&self) -> io::Result<()> {
        self.freeze_guard()?.disarm();
        Ok(())
    }

    /// Freezes the server like [`freeze`](Self::freeze) and returns a guard
    /// that thaws it when dropped.
    ///
    /// ```no_run
    /// let db = pool_testkit::MariaDbServer::start().unwrap();
    /// let frozen = db.freeze_guard().unwrap();
    /// assert_eq!(frozen.pids(), &[db.pid().unwrap()]);
    /// drop(frozen); // SIGCONT
    /// assert_eq!(db.run_sql("SELECT 1").unwrap(), "1");
    /// ```
    pub fn freeze_guard(&self) -> io::Result<Frozen> {
        faults::freeze_tree(self.pid(), &self.sup.root, "mariadbd")
    }

    /// Thaws a frozen server (`SIGCONT`); harmless when it is not frozen.
    /// See [`freeze`](Self::freeze).
    pub fn thaw(&self) -> io::Result<()> {
        faults::thaw_tree(self.pid(), &self.sup.root, &[])
    }

    /// Sets the per-account connection limit of [`MARIADB_USER`] (all three
    /// of its host entries): `ALTER USER .. WITH MAX_USER_CONNECTIONS n`.
    /// It holds for new logins at once; sessions already open stay, and count
    /// against it. A login beyond the limit fails with error 1226,
    /// `User 'pool_test' has exceeded the 'max_user_connections' resource
    /// (current value: n)`.
    ///
    /// `None` lifts the limit. MariaDB counts an account's sessions only when
    /// they log in while the account has *some* limit (a session opened under
    /// limit 0 is never counted, not even against a limit set later), so the
    /// harness gives the user a limit of one million from the start, and
    /// `None` restores that rather than 0.
    ///
    /// ```no_run
    /// let db = pool_testkit::MariaDbServer::start().unwrap();
    /// db.set_connection_limit(Some(2)).unwrap();
    /// // A third session of pool_test is refused while two are open.
    /// db.set_connection_limit(None).unwrap();
    /// ```
    pub fn set_connection_limit(&self, limit: Option<u32>) -> io::Result<()> {
        let u = MARIADB_USER;
        self.run_sql(&format!(
            "ALTER USER '{u}'@'%', '{u}'@'127.0.0.1', '{u}'@'localhost' \
             WITH MAX_USER_CONNECTIONS {}",
            limit.unwrap_or(UNLIMITED_BUT_COUNTED)
        ))
        .map(drop)
    }

    /// How many sessions [`MARIADB_USER`] has on the server right now
    /// (`information_schema.PROCESSLIST` rows with that user; a connection
    /// still in its handshake shows as `unauthenticated user` and is not
    /// counted). The count runs through [`run_sql`](Self::run_sql) as root,
    /// so its own session is not counted and it works while the user is at
    /// its limit. Each call starts the `mariadb` client (some 10-30 ms).
    ///
    /// ```no_run
    /// let db = pool_testkit::MariaDbServer::start().unwrap();
    /// assert_eq!(db.session_count().unwrap(), 0);
    /// ```
    pub fn session_count(&self) -> io::Result<u32> {
        let out = self.run_sql(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{MARIADB_USER}'"
        ))?;
        out.trim()
            .parse()
            .map_err(|e| other(format!("session count {out:?} is not a number: {e}")))
    }

    /// Stops the server (SIGTERM; SIGKILL after 30 s). Does nothing if it is
    /// not running.
    pub fn stop(&mut self) -> io::Result<()> {
        self.sup.stop(Duration::from_secs(30))
    }

    /// SIGKILLs mariadbd to simulate a crash.
    pub fn kill(&mut self) -> io::Result<()> {
        self.sup.kill()
    }

    /// Stops the server and starts it again on the same port and data directory.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// Starts the server again after [`stop`](Self::stop) or
    /// [`kill`](Self::kill) (same port and data directory). Fails if it is running.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.sup.exited().is_none() && self.sup.pid().is_some() {
            return Err(other("mariadbd is already running"));
        }
        util::reap_stragglers(&self.data_dir, Duration::from_secs(10));
        self.spawn_and_wait()
    }

    /// Runs SQL with the `mariadb` client as root over the Unix socket
    /// (`--batch --skip-column-names`) and returns its output (trailing
    /// newline removed). Several `;`-separated statements are allowed.
    pub fn run_sql(&self, sql: &str) -> io::Result<String> {
        self.run_sql_in("", sql)
    }

    /// Like [`run_sql`](Self::run_sql), with `database` as the default database.
    pub fn run_sql_in(&self, database: &str, sql: &str) -> io::Result<String> {
        let mut cmd = Command::new(&self.bins.client);
        cmd.arg("--no-defaults")
            .arg("--protocol=socket")
            .arg(opt("--socket", &self.socket))
            .args([
                "--user=root",
                "--batch",
                "--skip-column-names",
                "--connect-timeout=10",
            ])
            .arg("-e")
            .arg(sql)
            .env_remove("MYSQL_PWD")
            .env_remove("MYSQL_HOST");
        if !database.is_empty() {
            cmd.arg(database);
        }
        let out = util::run_checked(&mut cmd, &format!("mariadb -e {sql:?}"))?;
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        while s.ends_with('\n') {
            s.pop();
        }
        Ok(s)
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        self.sup.shutdown();
    }
}

/// Connects and reads the initial handshake packet: ready when the server
/// sends protocol version 10 (an error packet starts with 0xff instead).
fn handshake_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(250)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 5];
    s.read_exact(&mut head).is_ok() && head[4] == 10
}
