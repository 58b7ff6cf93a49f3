//! The connections kept apart from the pool for one-row reads: which are reused, which are
//! closed, what happens to one the server closed while it sat idle, and how long a caller waits
//! when all are taken.

use std::time::Duration;

use cloudfront_lifecycle::store::reads::ReadConnections;
use sqlx::PgConnection;

use crate::harness::create_database;

async fn backend_pid(connection: &mut PgConnection) -> i32 {
    sqlx::query_scalar::<_, i32>("select pg_backend_pid()")
        .fetch_one(connection)
        .await
        .unwrap()
}

#[tokio::test]
async fn released_connection_is_reused() {
    let reads = ReadConnections::new(&create_database().await, 2).unwrap();

    let mut lease = reads.acquire().await.unwrap();
    let first = backend_pid(lease.connection()).await;
    lease.release();

    let mut lease = reads.acquire().await.unwrap();
    let second = backend_pid(lease.connection()).await;
    lease.release();

    assert_eq!(first, second);
}

#[tokio::test]
async fn dropped_lease_closes_connection() {
    let url = create_database().await;
    let reads = ReadConnections::new(&url, 2).unwrap();

    let mut lease = reads.acquire().await.unwrap();
    let dropped = backend_pid(lease.connection()).await;
    drop(lease);

    let mut lease = reads.acquire().await.unwrap();
    let replacement = backend_pid(lease.connection()).await;
    assert_ne!(dropped, replacement);

    // The dropped connection's backend ends once it reads the closed socket.
    let still_there = "select count(*) from pg_stat_activity where pid = $1";
    let mut remaining = 1;
    for _ in 0..50 {
        remaining = sqlx::query_scalar::<_, i64>(still_there)
            .bind(dropped)
            .fetch_one(&mut *lease.connection())
            .await
            .unwrap();
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(remaining, 0, "backend {dropped} is still running");
    lease.release();
}

#[tokio::test]
async fn idle_connection_closed_by_server_is_replaced() {
    let url = create_database().await;
    let reads = ReadConnections::new(&url, 2).unwrap();

    // Two connections at once, so the one left open can end the other's backend.
    let mut victim = reads.acquire().await.unwrap();
    let mut other = reads.acquire().await.unwrap();
    let killed = backend_pid(victim.connection()).await;
    let survivor = backend_pid(other.connection()).await;
    victim.release();
    sqlx::query("select pg_terminate_backend($1)")
        .bind(killed)
        .execute(&mut *other.connection())
        .await
        .unwrap();
    other.release();

    // Idle long enough to be pinged; the killed connection fails its ping and is skipped.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut first = reads.acquire().await.unwrap();
    let mut second = reads.acquire().await.unwrap();
    let pids = [
        backend_pid(first.connection()).await,
        backend_pid(second.connection()).await,
    ];
    assert!(
        !pids.contains(&killed),
        "the killed backend {killed} was reused"
    );
    assert!(
        pids.contains(&survivor),
        "the live connection was not reused"
    );
    first.release();
    second.release();
}

#[tokio::test]
async fn full_pool_acquire_times_out() {
    let reads = ReadConnections::new(&create_database().await, 1).unwrap();
    let only_lease = reads.acquire().await.unwrap();

    let started = std::time::Instant::now();
    let result = reads.acquire().await;
    let waited = started.elapsed();

    assert!(
        matches!(result, Err(sqlx::Error::PoolTimedOut)),
        "expected PoolTimedOut, got {:?}",
        result.err()
    );
    assert!(waited >= Duration::from_secs(5), "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(7), "waited {waited:?}");
    only_lease.release();
}
