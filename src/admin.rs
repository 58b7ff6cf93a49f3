//! `cloudfront-lifecycle admin`: operator commands that work on the database directly, under
//! the same rules as the API and the worker (fenced by the lease token, history kept).

mod sweep;

use anyhow::Context;
use clap::{Args, Subcommand};
use sqlx::PgPool;
use uuid::Uuid;

use crate::api::distributions::DistributionResource;
use crate::api::events::EventView;
use crate::config::DatabaseArgs;
use crate::lifecycle::Status;
use crate::store::{self, Distribution, events};

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// List distributions of every owner, newest first.
    List {
        /// Only rows with this status.
        #[arg(long, value_parser = parse_status)]
        status: Option<Status>,
        /// Only rows of this owner (the token's sub).
        #[arg(long)]
        owner: Option<String>,
        /// Rows to print, 1 to 1000.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Print one distribution with its internal state and history.
    Show { id: Uuid },
    /// Make a distribution due for a check now, cancelling any check in flight.
    Recheck { id: Uuid },
    /// Put a failed distribution back into its lifecycle.
    Retry {
        id: Uuid,
        /// Act only if the distribution belongs to this owner.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Classify every distribution in the CloudFront account; with --adopt-orphans or
    /// --delete-disabled-older-than, adopt the selected ones and delete them. Without those
    /// options it changes nothing.
    Sweep(Box<sweep::SweepArgs>),
}

fn parse_status(value: &str) -> Result<Status, String> {
    Status::parse(value).ok_or_else(|| {
        let names: Vec<&str> = Status::ALL.iter().map(|status| status.as_str()).collect();
        format!("unknown status {value:?}; use one of {}", names.join(", "))
    })
}

/// Runs one admin command.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let pool = store::connect_lazy(&args.database.database_url, 2)
        .context("DATABASE_URL is not a valid Postgres URL")?;
    match args.command {
        AdminCommand::List {
            status,
            owner,
            limit,
        } => {
            let rows =
                store::admin::list(&pool, status.map(Status::as_str), owner.as_deref(), limit)
                    .await?;
            if args.json {
                let items: Vec<DistributionResource> =
                    rows.into_iter().map(DistributionResource::from).collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                print_table(&rows);
            }
        }
        AdminCommand::Show { id } => {
            let row = find(&pool, id).await?;
            let history = events::list(&pool, id)
                .await?
                .into_iter()
                .map(EventView::try_from)
                .collect::<Result<Vec<_>, _>>()?;
            if args.json {
                let document = serde_json::json!({
                    "distribution": DistributionResource::from(row.clone()),
                    "internal": internal_state(&row),
                    "history": history,
                });
                println!("{}", serde_json::to_string_pretty(&document)?);
            } else {
                print_details(&row, &history);
            }
        }
        AdminCommand::Recheck { id } => {
            let row = store::admin::recheck(&pool, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no distribution has id {id}"))?;
            match row.status {
                Status::Deleted => {
                    anyhow::bail!("distribution {id} is deleted; there is nothing to check")
                }
                Status::Failed => anyhow::bail!(
                    "distribution {id} is failed; use `admin retry {id}` to put it back into its lifecycle"
                ),
                _ => {}
            }
            store::notify_work(&pool).await?;
            tracing::info!(distribution.id = %id, status = %row.status, "recheck requested by an operator");
            println!("{id} is due now (status {})", row.status);
        }
        AdminCommand::Retry { id, owner } => {
            let outcome = retry(&pool, id, owner.as_deref()).await?;
            println!("{outcome}");
        }
        AdminCommand::Sweep(sweep) => sweep::run(&pool, &sweep, args.json).await?,
    }
    Ok(())
}

/// Puts a failed row back into the lifecycle, by the same rules as
/// `POST /v1/distributions/{id}/retry`.
async fn retry(pool: &PgPool, id: Uuid, owner: Option<&str>) -> anyhow::Result<String> {
    use store::distributions::RetryOutcome;
    match store::distributions::retry(pool, id, owner).await? {
        RetryOutcome::Retried(row) => {
            store::notify_work(pool).await?;
            Ok(format!(
                "distribution {id} is back in the lifecycle as {}",
                row.status
            ))
        }
        RetryOutcome::NotFailed(row) => anyhow::bail!(
            "distribution {id} is {}, not failed; nothing to retry (use admin recheck to look at it again)",
            row.status
        ),
        RetryOutcome::NotFound => anyhow::bail!("no distribution has id {id}"),
    }
}

async fn find(pool: &PgPool, id: Uuid) -> anyhow::Result<Distribution> {
    store::distributions::get(pool, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no distribution has id {id}"))
}

fn internal_state(row: &Distribution) -> serde_json::Value {
    serde_json::json!({
        "owner": row.owner,
        "intent": row.intent.as_str(),
        "next_check_at": row.next_check_at,
        "lease_token": row.lease_token,
        "failures": row.failures,
        "checks": row.checks,
        "waiting_since": row.waiting_since,
        "disable_confirmed": row.disable_confirmed,
        "enabled_reads": row.enabled_reads,
        "etag": row.etag,
        "caller_reference": row.caller_reference,
    })
}

fn print_table(rows: &[Distribution]) {
    println!(
        "{:<36}  {:<10}  {:<7}  {:<16}  {:<20}  {:<32}  LAST ERROR",
        "ID", "STATUS", "INTENT", "CLOUDFRONT ID", "OWNER", "CREATED"
    );
    for row in rows {
        println!(
            "{:<36}  {:<10}  {:<7}  {:<16}  {:<20}  {:<32}  {}",
            row.id,
            row.status.as_str(),
            row.intent.as_str(),
            row.cloudfront_id.as_deref().unwrap_or("-"),
            row.owner,
            row.created_at.to_rfc3339(),
            row.last_error_code.as_deref().unwrap_or("-"),
        );
    }
}

fn print_details(row: &Distribution, history: &[EventView]) {
    let optional = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    println!("id                 {}", row.id);
    println!("owner              {}", row.owner);
    println!("status             {}", row.status);
    println!("intent             {}", row.intent.as_str());
    println!("cloudfront id      {}", optional(row.cloudfront_id.clone()));
    println!("domain name        {}", optional(row.domain_name.clone()));
    println!(
        "cloudfront status  {} (enabled: {})",
        optional(row.cloudfront_status.clone()),
        optional(row.cloudfront_enabled.map(|enabled| enabled.to_string()))
    );
    println!(
        "next check at      {}",
        optional(row.next_check_at.map(|at| at.to_rfc3339()))
    );
    println!("lease token        {}", row.lease_token);
    println!("failures           {}", row.failures);
    println!("checks this wait   {}", row.checks);
    println!("overdue            {}", row.overdue);
    println!(
        "delete requested   {}",
        optional(row.delete_requested_at.map(|at| at.to_rfc3339()))
    );
    if let Some(code) = &row.last_error_code {
        println!(
            "last error         {code}: {} ({})",
            row.last_error_message.as_deref().unwrap_or(""),
            optional(row.last_error_at.map(|at| at.to_rfc3339()))
        );
    }
    println!();
    println!("history:");
    for event in history {
        let from = event.from_status.map_or("-", Status::as_str);
        println!(
            "  {:>8}  {}  {} -> {}  ({})",
            event.id,
            event.created_at.to_rfc3339(),
            from,
            event.to_status,
            event.reason
        );
    }
}
