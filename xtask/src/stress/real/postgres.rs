//! PostgreSQL through pool-postgres: the [`Dialect`] of `--backend postgres`
//! and the set-up of its run.

use std::io;

use pool_postgres::postgres::{self, SimpleQueryMessage};
use pool_postgres::{NoTls, PgConnection, PostgresManager};
use pool_testkit::{PgServer, PG_DATABASE, PG_SUPERUSER};

use super::backend::Real;
use super::tracking::{Ctx, Ledger};
use super::{
    assemble, quote, scratch_table, setup, Dialect, ADMIN_CONNECT_TIMEOUT, DEADLINE_THREADS,
};
use crate::stress::backend::OpError;
use crate::stress::StressArgs;
use crate::util::Result;

/// PostgreSQL through pool-postgres.
pub(in crate::stress) struct Pg {
    /// The monitoring connection's configuration (directly to the server).
    pub(super) admin: postgres::Config,
    /// The pool's `application_name`, by which its sessions are found.
    pub(super) app_name: String,
}

pub(in crate::stress) fn pg_error(e: postgres::Error) -> OpError {
    OpError {
        fatal: pool_postgres::is_connection_error(&e),
        message: pool_postgres::Error::from(e).to_string(),
    }
}

pub(in crate::stress) fn pg_op(
    conn: &mut PgConnection,
    sql: &str,
) -> std::result::Result<Vec<SimpleQueryMessage>, OpError> {
    conn.simple_query(sql).map_err(pg_error)
}

/// The rows of a simple query, each as its text columns.
pub(in crate::stress) fn pg_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

pub(in crate::stress) fn pg_ids(
    messages: &[SimpleQueryMessage],
) -> std::result::Result<Vec<u32>, String> {
    pg_rows(messages)
        .into_iter()
        .map(|row| {
            let text = row.into_iter().next().flatten().unwrap_or_default();
            text.parse::<u32>()
                .map_err(|e| format!("unexpected server id {text:?}: {e}"))
        })
        .collect()
}

impl Dialect for Pg {
    type Inner = PostgresManager<NoTls>;
    type Admin = postgres::Client;
    type Server = PgServer;
    const HELPER_THREADS: &'static [&'static str] = &[DEADLINE_THREADS, "pool-postgres-io"];

    fn server_id(conn: &mut PgConnection) -> std::result::Result<u32, String> {
        let messages = pg_op(conn, "SELECT pg_backend_pid()").map_err(|e| e.message)?;
        pg_ids(&messages)?
            .first()
            .copied()
            .ok_or_else(|| "pg_backend_pid() returned no row".to_owned())
    }

    fn connect_admin(&self) -> std::result::Result<postgres::Client, String> {
        self.admin
            .connect(NoTls)
            .map_err(|e| pool_postgres::Error::from(e).to_string())
    }

    fn sessions(&self, admin: &mut postgres::Client) -> std::result::Result<Vec<u32>, String> {
        let sql = format!(
            "SELECT pid FROM pg_catalog.pg_stat_activity WHERE application_name = {}",
            quote(&self.app_name, false)
        );
        let messages = admin
            .simple_query(&sql)
            .map_err(|e| pool_postgres::Error::from(e).to_string())?;
        pg_ids(&messages)
    }

    fn kill(&self, admin: &mut postgres::Client, ids: &[u32]) -> std::result::Result<u64, String> {
        if ids.is_empty() {
            return Ok(0);
        }
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        // Only sessions that are still the pool's (a pid may be reused).
        let sql = format!(
            "SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid)) \
             FROM pg_catalog.pg_stat_activity WHERE application_name = {} AND pid IN ({})",
            quote(&self.app_name, false),
            list.join(", ")
        );
        let messages = admin
            .simple_query(&sql)
            .map_err(|e| pool_postgres::Error::from(e).to_string())?;
        Ok(pg_ids(&messages)?.first().copied().map_or(0, u64::from))
    }

    fn drop_table(admin: &mut postgres::Client, table: &str) -> std::result::Result<(), String> {
        admin
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .map_err(|e| pool_postgres::Error::from(e).to_string())
    }

    fn stop(server: &mut PgServer) -> io::Result<()> {
        server.stop()
    }

    fn start_again(server: &mut PgServer) -> io::Result<()> {
        server.start_again()
    }

    fn is_running(server: &PgServer) -> bool {
        server.is_running()
    }

    fn query(conn: &mut PgConnection) -> std::result::Result<(), OpError> {
        pg_op(conn, "SELECT 1").map(drop)
    }

    fn begin(conn: &mut PgConnection, table: &str) -> std::result::Result<(), OpError> {
        pg_op(conn, &format!("BEGIN; INSERT INTO {table} DEFAULT VALUES")).map(drop)
    }

    fn end(conn: &mut PgConnection, commit: bool) -> std::result::Result<(), OpError> {
        pg_op(conn, if commit { "COMMIT" } else { "ROLLBACK" }).map(drop)
    }

    fn set_owner(conn: &mut PgConnection, owner: &str) -> std::result::Result<(), OpError> {
        pg_op(conn, &format!("SET stress.owner = {}", quote(owner, false))).map(drop)
    }

    fn session_state(
        conn: &mut PgConnection,
        _check_trx: bool,
    ) -> std::result::Result<Option<String>, OpError> {
        // Outside a transaction block a statement starts its own
        // transaction, so now() (the transaction's start) equals
        // statement_timestamp(); in a block left open they differ. After
        // a reset the custom setting reads as '' (or NULL if never set).
        let sql = "SELECT coalesce(current_setting('stress.owner', true), ''), \
                   now() = statement_timestamp()";
        let messages = match conn.simple_query(sql) {
            Ok(messages) => messages,
            Err(e) if e.code() == Some(&postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION) => {
                return Ok(Some("a failed transaction".to_owned()));
            }
            Err(e) => return Err(pg_error(e)),
        };
        let rows = pg_rows(&messages);
        let Some([owner, fresh]) = rows.first().map(|r| [r.first(), r.get(1)]) else {
            return Err(OpError {
                fatal: false,
                message: "the session check returned no row".to_owned(),
            });
        };
        let owner = owner.cloned().flatten().unwrap_or_default();
        let mut found = Vec::new();
        if !owner.is_empty() {
            found.push(format!("stress.owner = '{owner}'"));
        }
        if fresh.cloned().flatten().as_deref() != Some("t") {
            found.push("an open transaction".to_owned());
        }
        Ok((!found.is_empty()).then(|| found.join(", ")))
    }
}

/// The PostgreSQL backend of `--url` or `--local`.
pub(in crate::stress) fn postgres(args: &StressArgs) -> Result<Real<Pg>> {
    let setup = setup(
        args,
        "PostgreSQL",
        PgServer::start,
        PgServer::addr,
        |server, via| {
            // The pool logs in as the superuser (trust authentication):
            // an unoptimised (dev profile) build spends about 50 ms of
            // CPU on each SCRAM-SHA-256 login of the password user,
            // which would make the run connect-bound. Under chaos it
            // logs in as the password user all the same: superusers are
            // exempt from the role connection limit of the capacity
            // fault, and the server's own session count is that user's.
            let addr = via.unwrap_or_else(|| server.addr());
            let pool = if args.chaos {
                server.url_via(addr)
            } else {
                format!("postgres://{PG_SUPERUSER}@{addr}/{PG_DATABASE}")
            };
            (pool, server.superuser_url())
        },
    )?;
    // Pool settings in the URL are ignored: the run's plan sets them.
    let (from_url, _) = PostgresManager::from_url(&setup.pool_url)?;
    let app_name = format!("xtask-stress-{}", std::process::id());
    let mut config = from_url.config().clone();
    config.application_name(&app_name);
    let inner = PostgresManager::new(config.clone(), NoTls);

    let (admin_manager, _) = PostgresManager::from_url(&setup.admin_url)?;
    let mut admin = admin_manager.config().clone();
    admin
        .application_name("xtask-stress-monitor")
        .connect_timeout(ADMIN_CONNECT_TIMEOUT);

    // The scratch table, created by the pool's own user.
    let table = scratch_table();
    config
        .application_name("xtask-stress-setup")
        .connect_timeout(ADMIN_CONNECT_TIMEOUT);
    let mut client = config
        .connect(NoTls)
        .map_err(|e| format!("cannot connect: {}", pool_postgres::Error::from(e)))?;
    let messages = client
        .simple_query(&format!(
            "SHOW server_version; CREATE TABLE IF NOT EXISTS {table} \
             (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
        ))
        .map_err(|e| format!("cannot set up: {}", pool_postgres::Error::from(e)))?;
    drop(client);
    let version = pg_rows(&messages)
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .unwrap_or_default();
    let description = format!("PostgreSQL {version} ({})", setup.place);
    let ctx = Ctx {
        ledger: Ledger::default(),
        table,
        check_trx: true,
    };
    Ok(assemble(
        Pg { admin, app_name },
        inner,
        ctx,
        description,
        setup,
        args.pool_size,
    ))
}
