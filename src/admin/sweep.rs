//! `cloudfront-lifecycle admin sweep`: the command line of the account sweep in
//! `crate::adopt::sweep`.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sqlx::PgPool;

use crate::adopt::sweep::{SweepOptions, SweepReport, sweep};
use crate::cloudfront::CloudFront;
use crate::config::{BackendKind, CloudFrontArgs, seconds};
use crate::store::rate_limit::{BucketLimit, RateLimitSettings};

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub cloudfront: CloudFrontArgs,

    /// Adopt every orphan (a distribution tagged with this service's row id that no live
    /// row manages), enabled or not, and request its deletion.
    #[arg(long)]
    pub adopt_orphans: bool,

    /// Adopt every unmanaged disabled distribution whose config last changed at least this
    /// long ago, such as 30d, 12h or 90m, and request its deletion.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delete_disabled_older_than: Option<Duration>,

    /// Owner of the rows the sweep adopts.
    #[arg(long, default_value = "sweep")]
    pub owner: String,

    /// Only consider distributions with this tag, as KEY=VALUE; repeat to require several.
    #[arg(long = "tag", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,

    /// Only consider distributions whose comment starts with this text.
    #[arg(long)]
    pub comment_prefix: Option<String>,

    /// CloudFront reads per second, shared with the workers of every replica; List,
    /// ListTags and Get calls of the sweep draw from it.
    #[arg(long, env = "CLOUDFRONT_READ_RATE", default_value_t = 5.0)]
    pub cloudfront_read_rate: f64,

    /// CloudFront reads that may be made at once after a quiet period.
    #[arg(long, env = "CLOUDFRONT_READ_BURST", default_value_t = 10.0)]
    pub cloudfront_read_burst: f64,

    /// Mutating CloudFront calls per second, shared with the workers; the sweep's
    /// TagResource calls draw from it.
    #[arg(long, env = "CLOUDFRONT_MUTATING_RATE", default_value_t = 1.0)]
    pub cloudfront_mutating_rate: f64,

    /// Mutating CloudFront calls that may be made at once after a quiet period.
    #[arg(long, env = "CLOUDFRONT_MUTATING_BURST", default_value_t = 2.0)]
    pub cloudfront_mutating_burst: f64,
}

fn parse_tag(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("invalid tag {value:?}; use KEY=VALUE")),
    }
}

impl SweepArgs {
    fn options(&self) -> SweepOptions {
        SweepOptions {
            adopt_orphans: self.adopt_orphans,
            delete_disabled_older_than: self.delete_disabled_older_than,
            owner: self.owner.clone(),
            tags: self.tags.clone(),
            comment_prefix: self.comment_prefix.clone(),
            rate_limits: RateLimitSettings {
                mutating: BucketLimit {
                    rate_per_second: self.cloudfront_mutating_rate,
                    burst: self.cloudfront_mutating_burst,
                },
                read: BucketLimit {
                    rate_per_second: self.cloudfront_read_rate,
                    burst: self.cloudfront_read_burst,
                },
                max_wait: seconds(10.0),
                ..RateLimitSettings::default()
            },
        }
    }
}

/// Runs the sweep and prints its report. Fails when any selected distribution could not be
/// adopted, after printing the whole report.
pub async fn run(pool: &PgPool, args: &SweepArgs, json: bool) -> anyhow::Result<()> {
    // The embedded simulator starts empty, so a sweep of it could only ever find nothing.
    if args.cloudfront.cloudfront_backend != BackendKind::Aws {
        anyhow::bail!(
            "admin sweep needs a real CloudFront account: set CLOUDFRONT_BACKEND=aws (and AWS_ENDPOINT_URL for a CloudFront-compatible server)"
        );
    }
    let cloudfront = CloudFront::from_environment(&args.cloudfront.call_settings()).await;
    let report = sweep(pool, &cloudfront, &args.options())
        .await
        .context("the sweep failed")?;

    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    let failed = report.failed().count();
    if failed > 0 {
        anyhow::bail!("{failed} selected distributions could not be adopted; see the error column");
    }
    Ok(())
}

fn print_table(report: &SweepReport) {
    println!(
        "{:<16}  {:<18}  {:<10}  {:<7}  {:<25}  {:<16}  COMMENT",
        "CLOUDFRONT ID", "CLASS", "STATUS", "ENABLED", "LAST MODIFIED", "ACTION"
    );
    for entry in &report.entries {
        // A dry run selects nothing, so only a run with a selecting option fills this in.
        let action = match (&entry.action, &entry.error) {
            (None, _) => "-".to_owned(),
            (Some(_), Some(error)) => format!("failed: {error}"),
            (Some(_), None) => "deleting".to_owned(),
        };
        println!(
            "{:<16}  {:<18}  {:<10}  {:<7}  {:<25}  {:<16}  {}",
            entry.cloudfront_id,
            entry.class.as_str(),
            entry.status,
            entry.enabled,
            entry
                .last_modified
                .map_or_else(|| "-".to_owned(), |at| at.to_rfc3339()),
            action,
            entry.comment,
        );
    }
    let selected = report.selected().count();
    println!();
    if report.dry_run {
        println!(
            "dry run: nothing was changed; {} distributions listed. Pass --adopt-orphans or --delete-disabled-older-than to act.",
            report.entries.len()
        );
    } else {
        println!(
            "{selected} distributions adopted and deleting ({} failed); the worker finishes their deletion.",
            report.failed().count()
        );
    }
}
