//! Throwaway PostgreSQL servers.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rustix::process::Signal;

use crate::faults::{self, Frozen};
use crate::util::{self, other, RunAs, Supervisor};

/// Name of the password-authenticated role created in every [`PgServer`].
pub const PG_USER: &str = "pool_test";
/// Password of [`PG_USER`] (checked with SCRAM-SHA-256).
pub const PG_PASSWORD: &str = "pool_test_pw";
/// Database owned by [`PG_USER`].
pub const PG_DATABASE: &str = "pool_test";
/// Superuser role (trust authentication on 127.0.0.1 and the socket).
pub const PG_SUPERUSER: &str = "postgres";

/// Default `max_connections` of a harness PostgreSQL server.
const DEFAULT_MAX_CONNECTIONS: u32 = 100;
/// How often start-up is retried with a new port when the port was taken.
const PORT_ATTEMPTS: usize = 4;

/// Locations of the PostgreSQL binaries used by the harness.
#[derive(Clone, Debug)]
pub(crate) struct PgBinaries {
    /// Directory holding `initdb`, `postgres`, `psql`, `pg_isready`.
    pub(crate) bindir: PathBuf,
}

impl PgBinaries {
    fn bin(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
    /// `psql` client from the same installation.
    pub(crate) fn psql(&self) -> PathBuf {
        self.bin("psql")
    }
    fn complete(dir: &Path) -> bool {
        ["initdb", "postgres", "psql"]
            .iter()
            .all(|b| util::is_executable(&dir.join(b)))
    }
}

/// Finds the PostgreSQL binaries: `$POOL_TESTKIT_PG_BINDIR`, then
/// `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`, then `PATH`.
pub(crate) fn pg_binaries() -> Result<PgBinaries, String> {
    static FOUND: OnceLock<Result<PgBinaries, String>> = OnceLock::new();
    FOUND.get_or_init(find_pg_binaries).clone()
}

fn find_pg_binaries() -> Result<PgBinaries, String> {
    let mut tried = Vec::new();
    if let Some(dir) = std::env::var_os("POOL_TESTKIT_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if PgBinaries::complete(&dir) {
            return Ok(PgBinaries { bindir: dir });
        }
        tried.push(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if PgBinaries::complete(&dir) {
                return Ok(PgBinaries { bindir: dir });
            }
            tried.push(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    for (_, dir) in versions {
        if PgBinaries::complete(&dir) {
            return Ok(PgBinaries { bindir: dir });
        }
        tried.push(dir);
    }
    if let Some(initdb) = util::find_binary(&["initdb"]) {
        if let Some(dir) = initdb.parent() {
            if PgBinaries::complete(dir) {
                return Ok(PgBinaries {
                    bindir: dir.to_path_buf(),
                });
            }
        }
    }
    tried.push(PathBuf::from("$PATH"));
    Err(format!(
        "PostgreSQL server binaries (initdb, postgres, psql) not found (looked in {}); \
         install the Debian package `postgresql` (apt-get install postgresql) \
         or set POOL_TESTKIT_PG_BINDIR",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The system user servers run as when the harness runs as root
/// (PostgreSQL and PgBouncer refuse to run as root).
pub(crate) fn postgres_run_as() -> Result<Option<RunAs>, String> {
    if !util::is_root() {
        return Ok(None);
    }
    util::lookup_user("postgres").map(Some).ok_or_else(|| {
        "running as root, but the system user `postgres` (created by the Debian package \
         `postgresql`) does not exist"
            .to_string()
    })
}

/// Configures and starts a [`PgServer`]; obtain one with [`PgServer::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct PgServerBuilder {
    max_connections: u32,
    config_lines: Vec<String>,
    startup_timeout: Duration,
}

impl Default for PgServerBuilder {
    fn default() -> Self {
        PgServerBuilder {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            config_lines: Vec::new(),
            startup_timeout: Duration::from_secs(60),
        }
    }
}

impl PgServerBuilder {
    /// Sets `max_connections` (default 100).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Appends a raw `postgresql.conf` line, e.g. `"idle_session_timeout = '2s'"`.
    /// Later lines override earlier ones and the harness defaults.
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.config_lines.push(line.into());
        self
    }

    /// Sets how long start-up may take before it fails (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Runs `initdb`, starts the server on a free port and creates the
    /// [`PG_USER`] role and [`PG_DATABASE`] database.
    pub fn start(self) -> io::Result<PgServer> {
        PgServer::start_with(self)
    }
}

/// A throwaway PostgreSQL server in its own temporary directory, listening on
/// a free port on 127.0.0.1.
///
/// Dropping it stops the server (fast shutdown, then SIGKILL) and deletes the
/// directory; should the test process die without dropping it, a watchdog
/// does the same within about a second.
#[derive(Debug)]
pub struct PgServer {
    sup: Supervisor,
    bins: PgBinaries,
    run_as: Option<RunAs>,
    data_dir: PathBuf,
    port: u16,
    startup_timeout: Duration,
}

impl PgServer {
    /// Starts a server with default settings (see [`PgServerBuilder`]).
    pub fn start() -> io::Result<PgServer> {
        PgServer::builder().start()
    }

    /// Returns a builder for a customised server.
    pub fn builder() -> PgServerBuilder {
        PgServerBuilder::default()
    }

    /// Checks that the binaries needed to start a server are installed.
    ///
    /// The error names the missing Debian package (`postgresql`).
    pub fn binaries_available() -> Result<(), String> {
        pg_binaries()?;
        postgres_run_as()?;
        Ok(())
    }

    fn start_with(b: PgServerBuilder) -> io::Result<PgServer> {
        let bins = pg_binaries().map_err(other)?;
        let run_as = postgres_run_as().map_err(other)?;
        let root = util::make_temp_root("ptk-pg-", run_as)?;
        let data_dir = root.join("data");
        let sup = Supervisor::new(
            root,
            "postgres.log",
            Signal::INT,
            "INT",
            Some(data_dir.join("postmaster.pid")),
        )?;
        let mut server = PgServer {
            sup,
            bins,
            run_as,
            data_dir,
            port: 0,
            startup_timeout: b.startup_timeout,
        };
        server.initdb(&b)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = util::free_port()?;
            server.write_port_config(&b)?;
            match server.spawn_and_wait() {
                Ok(()) => break,
                Err(e)
                    if attempt < PORT_ATTEMPTS && util::log_says_addr_in_use(&server.sup.log) =>
                {
                    let _ = e;
                    let _ = fs::write(&server.sup.log, b"");
                }
                Err(e) => return Err(e),
            }
        }
        server.run_sql(&format!(
            "CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}'"
        ))?;
        server.run_sql(&format!("CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}"))?;
        Ok(server)
    }

    fn initdb(&self, _b: &PgServerBuilder) -> io::Result<()> {
        let mut cmd = Command::new(self.bins.bin("initdb"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                PG_SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(&self.sup.root)
            .env("HOME", &self.sup.root)
            .env("LC_ALL", "C");
        util::apply_run_as(&mut cmd, self.run_as);
        util::run_checked(&mut cmd, "initdb")?;
        let hba = format!(
            "# pool-testkit\n\
             local all {PG_SUPERUSER} trust\n\
             host  all {PG_SUPERUSER} 127.0.0.1/32 trust\n\
             local all all scram-sha-256\n\
             host  all all 127.0.0.1/32 scram-sha-256\n"
        );
        fs::write(self.data_dir.join("pg_hba.conf"), hba)?;
        let mut conf = fs::read_to_string(self.data_dir.join("postgresql.conf"))?;
        conf.push_str("\n# pool-testkit\ninclude 'pool_testkit.conf'\n");
        fs::write(self.data_dir.join("postgresql.conf"), conf)?;
        Ok(())
    }

    fn write_port_config(&self, b: &PgServerBuilder) -> io::Result<()> {
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{sock}'\n\
             max_connections = {max}\n\
             fsync = off\n\
             full_page_writes = off\n\
             shared_buffers = 32MB\n\
             password_encryption = 'scram-sha-256'\n\
             logging_collector = off\n\
             log_line_prefix = '%m [%p] '\n",
            port = self.port,
            sock = self.sup.root.display(),
            max = b.max_connections,
        );
        for line in &b.config_lines {
            conf.push_str(line);
            conf.push('\n');
        }
        fs::write(self.data_dir.join("pool_testkit.conf"), conf)
    }

    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let mut cmd = Command::new(self.bins.bin("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .current_dir(&self.data_dir)
            .env("HOME", &self.sup.root)
            .env("LC_ALL", "C");
        util::apply_run_as(&mut cmd, self.run_as);
        self.sup.spawn(&mut cmd)?;
        let addr = self.addr();
        let pg_isready = self.bins.bin("pg_isready");
        let has_isready = util::is_executable(&pg_isready);
        let psql = self.bins.psql();
        let port = self.port.to_string();
        util::wait_ready(&mut self.sup, "postgres", self.startup_timeout, || {
            if !util::tcp_connectable(addr) {
                return false;
            }
            let mut cmd = if has_isready {
                let mut c = Command::new(&pg_isready);
                c.args(["-q", "-t", "2"]);
                c
            } else {
                let mut c = Command::new(&psql);
                c.args(["-X", "-q", "-c", "SELECT 1"]);
                c
            };
            cmd.args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                PG_SUPERUSER,
                "-d",
                "postgres",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        })
    }

    /// URL for the password user: `postgres://pool_test:pool_test_pw@127.0.0.1:PORT/pool_test`.
    pub fn url(&self) -> String {
        self.url_with_password(PG_PASSWORD)
    }

    /// Like [`url`](Self::url) but with another password (for "wrong password" tests).
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://{PG_USER}:{password}@127.0.0.1:{}/{PG_DATABASE}",
            self.port
        )
    }

    /// URL for the password user, but pointing at `addr` instead of the
    /// server, e.g. a [`FaultProxy`](crate::FaultProxy) in front of it.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        format!("postgres://{PG_USER}:{PG_PASSWORD}@{addr}/{PG_DATABASE}")
    }

    /// Superuser URL (trust auth): `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn superuser_url(&self) -> String {
        format!("postgres://{PG_SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// TCP port the server listens on (stays the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// The data directory (inside the temporary root).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory holding the Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.sup.root
    }

    /// The temporary root (data dir, socket, log); deleted on drop.
    pub fn root_dir(&self) -> &Path {
        &self.sup.root
    }

    /// Path of the server log.
    pub fn log_path(&self) -> &Path {
        &self.sup.log
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        util::log_tail(&self.sup.log)
    }

    /// Pid of the postmaster, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.sup.pid()
    }

    /// True when the postmaster process is alive.
    pub fn is_running(&self) -> bool {
        self.sup.is_running()
    }

    /// Freezes the whole server with `SIGSTOP`: the postmaster first, then
    /// every process below it (backends, checkpointer, walwriter...). The
    /// listening socket stays open, so new TCP connections are still accepted
    /// by the kernel but never answered; established sessions stop answering
    /// too. Stays frozen until [`thaw`](Self::thaw), [`stop`](Self::stop) or
    /// drop; prefer [`freeze_guard`](Self::freeze_guard), which thaws even
    /// when the test panics.
    ///
    /// ```no_run
    /// let pg = pool_testkit::PgServer::start().unwrap();
    /// pg.freeze().unwrap();
    /// // ... connects and queries hang here ...
    /// pg.thaw().unwrap();
    /// assert_eq!(pg.run_sql("SELECT 1").unwrap(), "1");
    /// ```
    pub fn freeze(&self) -> io::Result<()> {
        self.freeze_guard()?.disarm();
        Ok(())
    }

    /// Freezes the server like [`freeze`](Self::freeze) and returns a guard
    /// that thaws it when dropped.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// let pg = pool_testkit::PgServer::start().unwrap();
    /// let frozen = pg.freeze_guard().unwrap();
    /// assert!(frozen.pids().len() > 1, "postmaster and its children");
    /// std::thread::sleep(Duration::from_secs(1));
    /// drop(frozen); // SIGCONT to every process stopped
    /// assert_eq!(pg.run_sql("SELECT 1").unwrap(), "1");
    /// ```
    pub fn freeze_guard(&self) -> io::Result<Frozen> {
        faults::freeze_tree(self.pid(), &self.sup.root, "postgres")
    }

    /// Thaws a frozen server (`SIGCONT` to the postmaster, its descendants
    /// and every process in the server's directory). Harmless when it is not
    /// frozen. See [`freeze`](Self::freeze).
    pub fn thaw(&self) -> io::Result<()> {
        faults::thaw_tree(self.pid(), &self.sup.root, &[])
    }

    /// Sets the connection limit of [`PG_USER`], the role the URLs log in as
    /// (`ALTER ROLE .. CONNECTION LIMIT n`; `None` lifts it, `-1`). It holds
    /// for new logins at once; sessions already open stay. A login beyond the
    /// limit fails with SQLSTATE 53300, `FATAL: too many connections for role
    /// "pool_test"`. The limit is kept across restarts (it is in the catalog).
    ///
    /// ```no_run
    /// let pg = pool_testkit::PgServer::start().unwrap();
    /// pg.set_connection_limit(Some(2)).unwrap();
    /// // A third session of pool_test is refused while two are open.
    /// pg.set_connection_limit(None).unwrap();
    /// ```
    pub fn set_connection_limit(&self, limit: Option<u32>) -> io::Result<()> {
        let n = limit.map_or(-1, i64::from);
        self.run_sql(&format!("ALTER ROLE {PG_USER} CONNECTION LIMIT {n}"))
            .map(drop)
    }

    /// How many sessions [`PG_USER`] has on the server right now: client
    /// backends in `pg_stat_activity` logged in as that role (a backend still
    /// authenticating has no user yet and is not counted). The count runs
    /// through [`run_sql`](Self::run_sql) as the superuser, so its own session
    /// is not counted and it works while the role is at its limit. Each call
    /// starts `psql` (some 10-30 ms).
    ///
    /// ```no_run
    /// let pg = pool_testkit::PgServer::start().unwrap();
    /// assert_eq!(pg.session_count().unwrap(), 0);
    /// ```
    pub fn session_count(&self) -> io::Result<u32> {
        let out = self.run_sql(&format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE usename = '{PG_USER}' AND backend_type = 'client backend'"
        ))?;
        out.trim()
            .parse()
            .map_err(|e| other(format!("session count {out:?} is not a number: {e}")))
    }

    /// Stops the server with a fast shutdown (SIGINT; SIGKILL after 10 s).
    /// Does nothing if it is not running.
    pub fn stop(&mut self) -> io::Result<()> {
        self.sup.stop(Duration::from_secs(10))
    }

    /// SIGKILLs the postmaster to simulate a crash. Backends notice the
    /// postmaster's death and exit on their own shortly after.
    pub fn kill(&mut self) -> io::Result<()> {
        self.sup.kill()
    }

    /// Stops the server and starts it again on the same port and data directory.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// Starts the server again after [`stop`](Self::stop) or [`kill`](Self::kill)
    /// (same port and data directory; after a kill PostgreSQL runs crash
    /// recovery). Fails if it is running.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.sup.exited().is_none() && self.sup.pid().is_some() {
            return Err(other("postgres is already running"));
        }
        // After a kill, orphaned backends still hold the shared memory; the
        // new postmaster would refuse to start until they are gone.
        util::reap_stragglers(&self.data_dir, Duration::from_secs(10));
        self.spawn_and_wait()
    }

    /// Runs SQL through `psql -X -A -t` as the superuser in database `postgres`
    /// and returns its output (trailing newline removed). `ON_ERROR_STOP` is
    /// set; a failure returns an error carrying psql's stderr.
    pub fn run_sql(&self, sql: &str) -> io::Result<String> {
        self.run_sql_in("postgres", sql)
    }

    /// Like [`run_sql`](Self::run_sql), in the given database.
    pub fn run_sql_in(&self, database: &str, sql: &str) -> io::Result<String> {
        let mut cmd = Command::new(self.bins.psql());
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", PG_SUPERUSER, "-d", database, "-c", sql])
            .env_remove("PGOPTIONS")
            .env_remove("PGSERVICE")
            .env_remove("PGSSLMODE")
            .env("PGCONNECT_TIMEOUT", "10");
        let out = util::run_checked(&mut cmd, &format!("psql -c {sql:?}"))?;
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        while s.ends_with('\n') {
            s.pop();
        }
        Ok(s)
    }

    /// Turns TLS on (`ssl = on`) with `certs`' server certificate, installed
    /// in the data directory as `server.crt`/`server.key` (owned by the
    /// server's user, mode 0600), and reloads the configuration; returns
    /// once the server reports `ssl` on. Clients may still connect in the
    /// clear unless they ask for `sslmode=require`.
    pub fn enable_tls(&self, certs: &crate::TestCertificates) -> io::Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let owner = std::fs::metadata(self.data_dir())?;
        for (from, name) in [
            (certs.server_cert_path(), "server.crt"),
            (certs.server_key_path(), "server.key"),
        ] {
            let target = self.data_dir().join(name);
            std::fs::copy(from, &target)?;
            std::os::unix::fs::chown(&target, Some(owner.uid()), Some(owner.gid()))?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
        }
        self.run_sql("ALTER SYSTEM SET ssl = on")?;
        self.run_sql("SELECT pg_reload_conf()")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.run_sql("SHOW ssl")? != "on" {
            if std::time::Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "PostgreSQL did not turn ssl on after a reload; its log: {}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Path of the `psql` binary of this installation.
    pub fn psql_path(&self) -> PathBuf {
        self.bins.psql()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.sup.shutdown();
    }
}
