//! Finished waits for Deployed, which the adaptive recheck schedule learns from.

use sqlx::PgExecutor;

use super::StoreError;
use crate::lifecycle::schedule::{HIGH_QUANTILE, LOW_QUANTILE, LearnedWindow, WaitKind};

/// Observations kept per kind; older ones are pruned, so the schedule follows changes in
/// how long CloudFront takes within a few hundred waits.
pub const KEPT_PER_KIND: i64 = 300;

/// Records how long one wait took and prunes its kind to the newest [`KEPT_PER_KIND`].
pub async fn record(
    executor: impl PgExecutor<'_>,
    kind: WaitKind,
    seconds: f64,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"
        with added as (
            insert into wait_observations (kind, seconds) values ($1, $2)
        ), oldest_kept as (
            select id from wait_observations
            where kind = $1
            order by id desc
            offset $3::int8 - 1 limit 1
        )
        delete from wait_observations
        where kind = $1 and id < (select id from oldest_kept)
        "#,
        kind.as_str(),
        seconds.max(0.0),
        KEPT_PER_KIND,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// The learned window of each kind of wait.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LearnedWindows {
    pub deploy: Option<LearnedWindow>,
    pub disable: Option<LearnedWindow>,
}

impl LearnedWindows {
    pub fn get(&self, kind: WaitKind) -> Option<LearnedWindow> {
        match kind {
            WaitKind::Deploy => self.deploy,
            WaitKind::Disable => self.disable,
        }
    }
}

/// Reads the low and high quantiles of the kept observations of each kind, in one query.
pub async fn learned_windows(executor: impl PgExecutor<'_>) -> Result<LearnedWindows, StoreError> {
    let rows = sqlx::query!(
        r#"
        select kind as "kind!",
               count(*) as "count!",
               percentile_cont($1::float8) within group (order by seconds) as "low!",
               percentile_cont($2::float8) within group (order by seconds) as "high!"
        from wait_observations
        group by kind
        "#,
        LOW_QUANTILE,
        HIGH_QUANTILE,
    )
    .fetch_all(executor)
    .await?;

    let mut windows = LearnedWindows::default();
    for row in rows {
        let window = LearnedWindow::from_quantiles(row.count, row.low, row.high);
        match row.kind.as_str() {
            "deploy" => windows.deploy = window,
            "disable" => windows.disable = window,
            _ => {}
        }
    }
    Ok(windows)
}
