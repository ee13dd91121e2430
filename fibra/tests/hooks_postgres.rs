//! The sync `postgres` crate, unchanged, on hooked fibers against a real PostgreSQL
//! (feature `hooks`; the server is started here, `servers/mod.rs`). Counts are exact.
#![cfg(all(feature = "hooks", target_os = "linux"))]

mod common;
mod servers;

use common::watchdog_for;
use std::time::Duration;

/// The sync client builds a tokio runtime per connection: a debug build of that needs more
/// than the default 64 KiB stack.
const STACK: usize = 1 << 20;

#[test]
fn postgres_hundred_fibers_hundred_queries_each() {
    let _w = watchdog_for(
        "postgres_hundred_fibers_hundred_queries_each",
        Duration::from_secs(120),
    );
    const FIBERS: i32 = 100;
    const QUERIES: i32 = 100;
    let Some(server) = servers::start_postgres(FIBERS as usize + 10) else {
        return;
    };
    let url = servers::postgres_url(server.port);
    let mut setup = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    setup
        .batch_execute("CREATE TABLE hits (fiber INT NOT NULL, n INT NOT NULL)")
        .unwrap();
    let rt = fibra::Runtime::builder()
        .workers(2)
        .stack_size(STACK)
        .build()
        .unwrap();
    let sums = rt.run(|| {
        let fibers: Vec<_> = (0..FIBERS)
            .map(|f| {
                let url = url.clone();
                fibra::spawn(move || {
                    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                    let mut sum = 0i64;
                    for q in 0..QUERIES {
                        if q % 2 == 0 {
                            let row = c.query_one("SELECT $1::INT + $2::INT", &[&f, &q]).unwrap();
                            sum += i64::from(row.get::<_, i32>(0));
                        } else {
                            let n = c
                                .execute("INSERT INTO hits VALUES ($1, $2)", &[&f, &q])
                                .unwrap();
                            assert_eq!(n, 1);
                        }
                    }
                    sum
                })
            })
            .collect();
        fibers
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (f, sum) in sums.iter().enumerate() {
        let f = f as i64;
        let want: i64 = (0..QUERIES as i64).step_by(2).map(|q| f + q).sum();
        assert_eq!(*sum, want, "fiber {f}'s SELECT results");
    }
    let row = setup
        .query_one("SELECT count(*), count(DISTINCT (fiber, n)) FROM hits", &[])
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(rows, i64::from(FIBERS * QUERIES / 2), "inserted rows");
    assert_eq!(distinct, rows, "each insert exactly once");
}
