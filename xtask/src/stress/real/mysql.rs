//! MySQL/MariaDB through pool-mysql: the [`Dialect`] of `--backend mysql` and
//! the set-up of its run.

use std::io;

use pool_mysql::mysql::prelude::Queryable;
use pool_mysql::mysql::{self, OptsBuilder};
use pool_mysql::{MysqlConnection, MysqlManager};
use pool_testkit::MariaDbServer;

use super::backend::Real;
use super::tracking::{Ctx, Ledger};
use super::{
    assemble, quote, scratch_table, setup, Dialect, ADMIN_CONNECT_TIMEOUT, DEADLINE_THREADS,
};
use crate::stress::backend::OpError;
use crate::stress::StressArgs;
use crate::util::Result;

/// MySQL/MariaDB through pool-mysql.
pub(in crate::stress) struct My {
    /// The monitoring connection's options (directly to the server).
    pub(super) admin: mysql::Opts,
    /// The pool's user, by which its sessions are found.
    pub(super) pool_user: String,
}

pub(in crate::stress) fn my_error(e: mysql::Error) -> OpError {
    OpError {
        fatal: pool_mysql::is_connection_error(&e),
        message: e.to_string(),
    }
}

pub(in crate::stress) fn my_op(
    conn: &mut MysqlConnection,
    sql: &str,
) -> std::result::Result<(), OpError> {
    conn.query_drop(sql).map_err(my_error)
}

impl Dialect for My {
    type Inner = MysqlManager;
    type Admin = mysql::Conn;
    type Server = MariaDbServer;
    const HELPER_THREADS: &'static [&'static str] = &[DEADLINE_THREADS, "pool-mysql-io"];

    fn server_id(conn: &mut MysqlConnection) -> std::result::Result<u32, String> {
        // The handshake's thread id: CONNECTION_ID(), with no round trip.
        Ok(conn.connection_id())
    }

    fn connect_admin(&self) -> std::result::Result<mysql::Conn, String> {
        mysql::Conn::new(self.admin.clone()).map_err(|e| e.to_string())
    }

    fn sessions(&self, admin: &mut mysql::Conn) -> std::result::Result<Vec<u32>, String> {
        let sql = format!(
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE USER = {} AND ID <> CONNECTION_ID()",
            quote(&self.pool_user, true)
        );
        admin.query::<u32, _>(sql).map_err(|e| e.to_string())
    }

    fn kill(&self, admin: &mut mysql::Conn, ids: &[u32]) -> std::result::Result<u64, String> {
        let mut killed = 0;
        for id in ids {
            match admin.query_drop(format!("KILL CONNECTION {id}")) {
                Ok(()) => killed += 1,
                // 1094 unknown thread: it ended meanwhile.
                Err(mysql::Error::MySqlError(e)) if e.code == 1094 => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(killed)
    }

    fn drop_table(admin: &mut mysql::Conn, table: &str) -> std::result::Result<(), String> {
        admin
            .query_drop(format!("DROP TABLE IF EXISTS {table}"))
            .map_err(|e| e.to_string())
    }

    fn stop(server: &mut MariaDbServer) -> io::Result<()> {
        server.stop()
    }

    fn start_again(server: &mut MariaDbServer) -> io::Result<()> {
        server.start_again()
    }

    fn is_running(server: &MariaDbServer) -> bool {
        server.is_running()
    }

    fn query(conn: &mut MysqlConnection) -> std::result::Result<(), OpError> {
        my_op(conn, "SELECT 1")
    }

    fn begin(conn: &mut MysqlConnection, table: &str) -> std::result::Result<(), OpError> {
        my_op(conn, "BEGIN")?;
        my_op(conn, &format!("INSERT INTO {table} () VALUES ()"))
    }

    fn end(conn: &mut MysqlConnection, commit: bool) -> std::result::Result<(), OpError> {
        my_op(conn, if commit { "COMMIT" } else { "ROLLBACK" })
    }

    fn set_owner(conn: &mut MysqlConnection, owner: &str) -> std::result::Result<(), OpError> {
        my_op(conn, &format!("SET @stress_owner = {}", quote(owner, true)))
    }

    fn session_state(
        conn: &mut MysqlConnection,
        check_trx: bool,
    ) -> std::result::Result<Option<String>, OpError> {
        let (owner, in_trx) = if check_trx {
            conn.query_first::<(Option<String>, i64), _>("SELECT @stress_owner, @@in_transaction")
                .map_err(my_error)?
                .unwrap_or_default()
        } else {
            let owner = conn
                .query_first::<Option<String>, _>("SELECT @stress_owner")
                .map_err(my_error)?
                .flatten();
            (owner, 0)
        };
        let mut found = Vec::new();
        if let Some(owner) = owner {
            found.push(format!("@stress_owner = '{owner}'"));
        }
        if in_trx != 0 {
            found.push("an open transaction".to_owned());
        }
        Ok((!found.is_empty()).then(|| found.join(", ")))
    }
}

/// The MySQL/MariaDB backend of `--url` or `--local`.
pub(in crate::stress) fn mysql(args: &StressArgs) -> Result<Real<My>> {
    let setup = setup(
        args,
        "MariaDB",
        MariaDbServer::start,
        MariaDbServer::addr,
        |server, via| {
            let pool = via.map_or_else(|| server.url(), |addr| server.url_via(addr));
            (pool, server.root_url())
        },
    )?;
    // Pool settings in the URL are ignored: the run's plan sets them.
    let (inner, _) = MysqlManager::from_url(&setup.pool_url)?;
    let pool_user = inner.opts().get_user().unwrap_or_default().to_owned();
    let (admin_manager, _) = MysqlManager::from_url(&setup.admin_url)?;
    let admin: mysql::Opts = OptsBuilder::from_opts(admin_manager.opts().clone())
        .tcp_connect_timeout(Some(ADMIN_CONNECT_TIMEOUT))
        .into();

    // The scratch table, created by the pool's own user.
    let table = scratch_table();
    let mut conn = mysql::Conn::new(
        OptsBuilder::from_opts(inner.opts().clone())
            .tcp_connect_timeout(Some(ADMIN_CONNECT_TIMEOUT)),
    )
    .map_err(|e| format!("cannot connect: {e}"))?;
    let version: String = conn
        .query_first("SELECT VERSION()")
        .map_err(|e| format!("cannot set up: {e}"))?
        .unwrap_or_default();
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
    ))
    .map_err(|e| format!("cannot set up: {e}"))?;
    // MariaDB tells whether a transaction is open; MySQL does not.
    let check_trx = conn.query_drop("SELECT @@in_transaction").is_ok();
    drop(conn);
    let kind = if version.contains("MariaDB") {
        "MariaDB"
    } else {
        "MySQL"
    };
    let description = format!(
        "{kind} {version} ({}{})",
        setup.place,
        if check_trx {
            ""
        } else {
            "; open transactions not checked: no @@in_transaction"
        }
    );
    let ctx = Ctx {
        ledger: Ledger::default(),
        table,
        check_trx,
    };
    Ok(assemble(
        My { admin, pool_user },
        inner,
        ctx,
        description,
        setup,
        args.pool_size,
    ))
}
