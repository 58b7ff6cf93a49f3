//! Finished waits for Deployed and the estimate of how long waits take, which the adaptive
//! recheck schedule learns from.

use sqlx::PgExecutor;

use super::StoreError;
use crate::lifecycle::Status;
use crate::lifecycle::schedule::{LearnedWindow, SurvivalStep, WaitKind, WaitSample};

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

/// Estimates the learned window of each kind from its kept finished waits and the waits of
/// that kind still open, in one query.
///
/// An open wait counts as lasting at least its age now, so waits that began together and
/// are still running pull the high quantile up instead of being missed. Postgres reduces the
/// open waits to at-risk counts, so only one row per distinct finished duration (at most
/// [`KEPT_PER_KIND`] per kind) comes back, however many waits are open.
///
/// NOTE: the finished waits are the newest by end, while every open wait counts. When many
/// waits run at once, the kept ones are the longer of them, so both quantiles run high
/// until the burst has drained. The schedule then checks densely for longer than needed,
/// and a new wait's first check comes later than it would.
pub async fn learned_windows(executor: impl PgExecutor<'_>) -> Result<LearnedWindows, StoreError> {
    let (statuses, kinds): (Vec<&str>, Vec<&str>) = Status::ALL
        .into_iter()
        .filter_map(|status| {
            WaitKind::of_status(status).map(|kind| (status.as_str(), kind.as_str()))
        })
        .unzip();

    let rows = sqlx::query!(
        r#"
        with waiting (status, kind) as (
            select * from unnest($1::text[], $2::text[])
        ), observed as (
            select kind, seconds, true as finished
            from wait_observations
            union all
            select waiting.kind,
                   greatest(extract(epoch from now() - d.waiting_since)::float8, 0),
                   false
            from distributions d
            join waiting on waiting.status = d.status
            where d.waiting_since is not null
        ), with_risk as (
            -- The default frame ends at the last row with the same duration, so each row
            -- counts the waits that lasted at least as long as it did.
            select kind, seconds, finished,
                   count(*) over (partition by kind order by seconds desc) as at_risk,
                   max(seconds) filter (where not finished) over (partition by kind)
                       as oldest_open
            from observed
        )
        select kind as "kind!",
               seconds as "seconds!",
               count(*) filter (where finished) as "ended!",
               max(at_risk) as "at_risk!",
               max(oldest_open) as oldest_open
        from with_risk
        group by kind, seconds
        having bool_or(finished)
        order by kind, seconds
        "#,
        &statuses as &[&str],
        &kinds as &[&str],
    )
    .fetch_all(executor)
    .await?;

    let mut deploy = WaitSample::default();
    let mut disable = WaitSample::default();
    for row in rows {
        let sample = match row.kind.as_str() {
            "deploy" => &mut deploy,
            "disable" => &mut disable,
            _ => continue,
        };
        sample.finished += row.ended;
        sample.oldest_open = row.oldest_open;
        sample.steps.push(SurvivalStep {
            seconds: row.seconds,
            ended: row.ended,
            at_risk: row.at_risk,
        });
    }
    Ok(LearnedWindows {
        deploy: LearnedWindow::estimate(&deploy),
        disable: LearnedWindow::estimate(&disable),
    })
}
