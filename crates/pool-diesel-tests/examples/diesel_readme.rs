//! The README's "Migrating from diesel's r2d2" example: diesel code written
//! for `diesel::r2d2`, with only the pool's imports changed.

use diesel::prelude::*;
use pool_core::diesel::ConnectionManager; // was: diesel::r2d2::ConnectionManager
use pool_core::{OwnedConnection, Pool}; // was: diesel::r2d2::{Pool, PooledConnection}

diesel::table! {
    users (id) {
        id -> Integer,
        name -> Text,
    }
}

type DbPool = Pool<ConnectionManager<SqliteConnection>>;
type DbConn = OwnedConnection<ConnectionManager<SqliteConnection>>; // was: PooledConnection<...>

// Unchanged: diesel code takes `&mut SqliteConnection`, and `&mut conn` is one.
fn create_user(conn: &mut SqliteConnection, name: &str) -> QueryResult<usize> {
    diesel::insert_into(users::table)
        .values(users::name.eq(name))
        .execute(conn)
}

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("diesel-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = dir.join("app.db").to_string_lossy().into_owned();

    let pool: DbPool = Pool::builder()
        .max_size(4)
        .build(ConnectionManager::new(url))?;
    let mut conn = pool.get()?;
    diesel::sql_query("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&mut conn)?;
    conn.transaction(|conn| {
        create_user(conn, "Ada")?;
        create_user(conn, "Grace")
    })?;

    // An owned loan goes to another thread, as r2d2's did.
    let mut owned: DbConn = pool.get_owned()?;
    let names = std::thread::spawn(move || {
        users::table
            .select(users::name)
            .order(users::id)
            .load::<String>(&mut owned)
    })
    .join()
    .expect("no panic")?;
    assert_eq!(names, ["Ada", "Grace"]);
    println!("users: {names:?}");

    std::fs::remove_dir_all(dir)?;
    Ok(())
}
