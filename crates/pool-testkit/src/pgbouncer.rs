//! Throwaway PgBouncer instances in front of a harness [`PgServer`].

use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rustix::process::Signal;

use crate::pg::{self, PgServer, PG_DATABASE, PG_PASSWORD, PG_USER};
use crate::util::{self, other, RunAs, Supervisor};

/// How many times start-up is retried with a new port when the port was taken.
const PORT_ATTEMPTS: usize = 4;

/// PgBouncer's `pool_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PoolMode {
    /// A server connection is assigned for the whole client session.
    Session,
    /// A server connection is assigned per transaction (the default).
    #[default]
    Transaction,
    /// A server connection is assigned per statement.
    Statement,
}

impl PoolMode {
    /// The value used in `pgbouncer.ini`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PgBouncer's client `auth_type`. The `auth_file` always holds the plain
/// password, which also lets PgBouncer log in to PostgreSQL with SCRAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PgBouncerAuth {
    /// Clear-text password.
    Plain,
    /// MD5 challenge.
    Md5,
    /// SCRAM-SHA-256 (the default).
    #[default]
    Scram,
}

impl PgBouncerAuth {
    /// The value used in `pgbouncer.ini`.
    pub fn as_str(self) -> &'static str {
        match self {
            PgBouncerAuth::Plain => "plain",
            PgBouncerAuth::Md5 => "md5",
            PgBouncerAuth::Scram => "scram-sha-256",
        }
    }
}

fn pgbouncer_binary() -> Result<PathBuf, String> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            util::find_binary(&["pgbouncer"]).ok_or_else(|| {
                "pgbouncer binary not found (looked in PATH and /usr/sbin); install the \
                 Debian package `pgbouncer` (apt-get install pgbouncer)"
                    .to_string()
            })
        })
        .clone()
}

/// Configures and starts a [`PgBouncer`]; obtain one with [`PgBouncer::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct PgBouncerBuilder {
    pool_mode: PoolMode,
    auth: PgBouncerAuth,
    max_client_conn: u32,
    default_pool_size: u32,
    config_lines: Vec<String>,
    startup_timeout: Duration,
}

impl Default for PgBouncerBuilder {
    fn default() -> Self {
        PgBouncerBuilder {
            pool_mode: PoolMode::Transaction,
            auth: PgBouncerAuth::Scram,
            max_client_conn: 200,
            default_pool_size: 20,
            config_lines: Vec::new(),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

impl PgBouncerBuilder {
    /// Sets `pool_mode` (default [`PoolMode::Transaction`]).
    pub fn pool_mode(mut self, mode: PoolMode) -> Self {
        self.pool_mode = mode;
        self
    }

    /// Sets the client `auth_type` (default [`PgBouncerAuth::Scram`]).
    pub fn auth(mut self, auth: PgBouncerAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets `max_client_conn` (default 200).
    pub fn max_client_conn(mut self, n: u32) -> Self {
        self.max_client_conn = n;
        self
    }

    /// Sets `default_pool_size` (default 20).
    pub fn default_pool_size(mut self, n: u32) -> Self {
        self.default_pool_size = n;
        self
    }

    /// Appends a raw line to the `[pgbouncer]` section, e.g.
    /// `"server_idle_timeout = 5"`. Later lines override the defaults.
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.config_lines.push(line.into());
        self
    }

    /// Sets how long start-up may take before it fails (default 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts PgBouncer on a free port in front of `upstream`.
    pub fn start(self, upstream: &PgServer) -> io::Result<PgBouncer> {
        PgBouncer::start_with(self, upstream)
    }
}

/// A throwaway PgBouncer on a free port on 127.0.0.1, in front of a harness
/// [`PgServer`]. It serves the databases `pool_test` and `postgres`; clients
/// log in as [`PG_USER`] / [`PG_PASSWORD`], which is also an admin user (the
/// admin console is the database `pgbouncer`, see [`PgBouncer::run_admin`]).
///
/// Dropping it stops PgBouncer and deletes its temporary directory.
#[derive(Debug)]
pub struct PgBouncer {
    sup: Supervisor,
    binary: PathBuf,
    psql: PathBuf,
    run_as: Option<RunAs>,
    ini: PathBuf,
    port: u16,
    upstream_port: u16,
    pool_mode: PoolMode,
    startup_timeout: Duration,
}

impl PgBouncer {
    /// Starts PgBouncer with the given pool mode and otherwise default
    /// settings (see [`PgBouncerBuilder`]).
    pub fn start(upstream: &PgServer, pool_mode: PoolMode) -> io::Result<PgBouncer> {
        PgBouncer::builder().pool_mode(pool_mode).start(upstream)
    }

    /// Returns a builder for a customised instance.
    pub fn builder() -> PgBouncerBuilder {
        PgBouncerBuilder::default()
    }

    /// Checks that `pgbouncer` and the PostgreSQL binaries are installed.
    ///
    /// The error names the missing Debian packages (`pgbouncer`, `postgresql`).
    pub fn binaries_available() -> Result<(), String> {
        let bouncer = pgbouncer_binary();
        let pg = PgServer::binaries_available();
        match (bouncer, pg) {
            (Ok(_), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(format!("{a}; {b}")),
            (Err(a), Ok(())) => Err(a),
            (Ok(_), Err(b)) => Err(b),
        }
    }

    fn start_with(b: PgBouncerBuilder, upstream: &PgServer) -> io::Result<PgBouncer> {
        let binary = pgbouncer_binary().map_err(other)?;
        let run_as = pg::postgres_run_as().map_err(other)?;
        let root = util::make_temp_root("ptk-bouncer-", run_as)?;
        // pgbouncer: SIGTERM is an immediate shutdown (SIGINT waits for clients).
        let sup = Supervisor::new(root.clone(), "pgbouncer.log", Signal::TERM, "TERM", None)?;
        let mut bouncer = PgBouncer {
            sup,
            binary,
            psql: upstream.psql_path(),
            run_as,
            ini: root.join("pgbouncer.ini"),
            port: 0,
            upstream_port: upstream.port(),
            pool_mode: b.pool_mode,
            startup_timeout: b.startup_timeout,
        };
        let userlist = root.join("userlist.txt");
        fs::write(&userlist, format!("\"{PG_USER}\" \"{PG_PASSWORD}\"\n"))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            bouncer.port = util::free_port()?;
            bouncer.write_ini(&b, &userlist)?;
            match bouncer.spawn_and_wait() {
                Ok(()) => return Ok(bouncer),
                Err(_)
                    if attempt < PORT_ATTEMPTS && util::log_says_addr_in_use(&bouncer.sup.log) =>
                {
                    let _ = fs::write(&bouncer.sup.log, b"");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn write_ini(&self, b: &PgBouncerBuilder, userlist: &Path) -> io::Result<()> {
        let up = self.upstream_port;
        let mut ini = format!(
            "[databases]\n\
             {PG_DATABASE} = host=127.0.0.1 port={up} dbname={PG_DATABASE}\n\
             postgres = host=127.0.0.1 port={up} dbname=postgres\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = {auth}\n\
             auth_file = {userlist}\n\
             pool_mode = {mode}\n\
             max_client_conn = {max_client}\n\
             default_pool_size = {pool_size}\n\
             pidfile = {pidfile}\n\
             admin_users = {PG_USER}\n\
             stats_users = {PG_USER}\n\
             ignore_startup_parameters = extra_float_digits\n\
             server_login_retry = 1\n",
            port = self.port,
            auth = b.auth.as_str(),
            userlist = userlist.display(),
            mode = b.pool_mode.as_str(),
            max_client = b.max_client_conn,
            pool_size = b.default_pool_size,
            pidfile = self.sup.root.join("pgbouncer.pid").display(),
        );
        for line in &b.config_lines {
            ini.push_str(line);
            ini.push('\n');
        }
        fs::write(&self.ini, ini)
    }

    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg(&self.ini)
            .current_dir(&self.sup.root)
            .env("HOME", &self.sup.root);
        util::apply_run_as(&mut cmd, self.run_as);
        self.sup.spawn(&mut cmd)?;
        let addr = self.addr();
        util::wait_ready(&mut self.sup, "pgbouncer", self.startup_timeout, || {
            util::tcp_connectable(addr)
        })
    }

    /// URL for the password user through PgBouncer:
    /// `postgres://pool_test:pool_test_pw@127.0.0.1:PORT/pool_test`.
    pub fn url(&self) -> String {
        self.url_with_password(PG_PASSWORD)
    }

    /// Like [`url`](Self::url) but with another password.
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://{PG_USER}:{password}@127.0.0.1:{}/{PG_DATABASE}",
            self.port
        )
    }

    /// URL of the admin console (database `pgbouncer`).
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/pgbouncer",
            self.port
        )
    }

    /// TCP port PgBouncer listens on (stays the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// The configured pool mode.
    pub fn pool_mode(&self) -> PoolMode {
        self.pool_mode
    }

    /// Path of the generated `pgbouncer.ini`.
    pub fn config_path(&self) -> &Path {
        &self.ini
    }

    /// The temporary root (ini, auth file, log); deleted on drop.
    pub fn root_dir(&self) -> &Path {
        &self.sup.root
    }

    /// Path of the PgBouncer log.
    pub fn log_path(&self) -> &Path {
        &self.sup.log
    }

    /// The last lines of the PgBouncer log.
    pub fn log_tail(&self) -> String {
        util::log_tail(&self.sup.log)
    }

    /// Pid of the pgbouncer process, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.sup.pid()
    }

    /// True when the pgbouncer process is alive.
    pub fn is_running(&self) -> bool {
        self.sup.is_running()
    }

    /// Stops PgBouncer (SIGTERM = immediate shutdown; SIGKILL after 10 s).
    pub fn stop(&mut self) -> io::Result<()> {
        self.sup.stop(Duration::from_secs(10))
    }

    /// SIGKILLs PgBouncer to simulate a crash.
    pub fn kill(&mut self) -> io::Result<()> {
        self.sup.kill()
    }

    /// Stops PgBouncer and starts it again on the same port.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// Starts PgBouncer again after [`stop`](Self::stop) or [`kill`](Self::kill).
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.sup.exited().is_none() && self.sup.pid().is_some() {
            return Err(other("pgbouncer is already running"));
        }
        self.spawn_and_wait()
    }

    /// Runs an admin console command (e.g. `SHOW POOLS`, `RECONNECT`) via
    /// `psql -X -A -t` and returns its output.
    pub fn run_admin(&self, command: &str) -> io::Result<String> {
        self.run_sql_in("pgbouncer", command)
    }

    /// Runs SQL through PgBouncer as [`PG_USER`] in database `database` via
    /// `psql -X -A -t` and returns its output (trailing newline removed).
    pub fn run_sql_in(&self, database: &str, sql: &str) -> io::Result<String> {
        let mut cmd = Command::new(&self.psql);
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", PG_USER, "-d", database, "-c", sql])
            .env("PGPASSWORD", PG_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGOPTIONS")
            .env_remove("PGSERVICE")
            .env_remove("PGSSLMODE");
        let out = util::run_checked(&mut cmd, &format!("psql (via pgbouncer) -c {sql:?}"))?;
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        while s.ends_with('\n') {
            s.pop();
        }
        Ok(s)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.sup.shutdown();
    }
}
