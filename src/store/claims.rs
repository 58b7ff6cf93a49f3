//! The worker's side of the table: claiming due rows under a lease, and fenced write-backs.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreError;
use super::distributions::{Distribution, Record};
use super::rate_limit::{Bucket, BucketLimit, RateLimitSettings};
use crate::lifecycle::Status;

/// A row claimed by a worker, with the database's time of the claim.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub row: Distribution,
    pub claimed_at: DateTime<Utc>,
    /// The bucket of a rate-limit token the claim already took for the check's first call,
    /// so that call skips its own take.
    pub token: Option<Bucket>,
}

/// Claims up to `limit` due rows, oldest due first, in one autocommit statement.
///
/// The CTE is MATERIALIZED so the planner runs the locking subquery once; SKIP LOCKED lets
/// replicas claim side by side without waiting on each other. Claiming pushes the due time
/// forward by the lease, so a row whose worker dies comes due again by itself, and bumps the
/// lease token, so the dead worker's late write-back is rejected.
pub async fn claim(
    executor: impl PgExecutor<'_>,
    limit: i64,
    lease_seconds: f64,
) -> Result<Vec<Claimed>, StoreError> {
    let records = sqlx::query_as!(
        Record,
        r#"
        with due as materialized (
            select id from distributions
            where next_check_at <= now()
            order by next_check_at
            limit $1
            for update skip locked
        )
        update distributions d
        set next_check_at = now() + make_interval(secs => $2),
            lease_token = d.lease_token + 1
        from due
        where d.id = due.id
        returning d.*, now() as "db_now?"
        "#,
        limit,
        lease_seconds,
    )
    .fetch_all(executor)
    .await?;
    Ok(parse_claimed(records))
}

/// Parses claimed rows. A row that no longer parses is skipped rather than failing the
/// claim, because an error would hold every row claimed with it until their leases end. It
/// stays under its lease and is logged again each time it comes due.
fn parse_claimed(records: Vec<Record>) -> Vec<Claimed> {
    let mut claimed = Vec::with_capacity(records.len());
    for record in records {
        let claimed_at = record.db_now.unwrap_or_else(Utc::now);
        let id = record.id;
        match Distribution::try_from(record) {
            Ok(row) => claimed.push(Claimed {
                row,
                claimed_at,
                token: None,
            }),
            Err(error) => {
                tracing::error!(distribution.id = %id, %error, "claimed row does not parse and is skipped until its lease ends")
            }
        }
    }
    claimed
}

/// Limits and order of a budget-aware claim.
#[derive(Clone, Copy, Debug)]
pub struct ClaimRequest<'a> {
    /// Rows to claim at most: the caller's free slots.
    pub limit: usize,
    pub lease_seconds: f64,
    /// The shared buckets the claim takes its tokens from.
    pub rate_limits: &'a RateLimitSettings,
    /// Takes the rows that have waited longest for Deployed first when the read bucket
    /// cannot cover every free slot. The adaptive schedule sets it. Fixed and backoff
    /// schedules keep the due order, as a delay queue or the SDK's waiter would.
    pub prioritize_waits: bool,
}

/// One bucket's parameters as the SQL statements take them. `limited` is false for an
/// effectively unlimited bucket, which the statements leave alone. The rates are in calls
/// per second, and `increase_per_second` is how much the rate climbs back each second.
struct BucketParams {
    limited: bool,
    rate: f64,
    burst: f64,
    floor: f64,
    increase_per_second: f64,
}

impl BucketParams {
    fn new(limit: BucketLimit, settings: &RateLimitSettings) -> Self {
        let rate = limit.rate_per_second.max(f64::MIN_POSITIVE);
        BucketParams {
            limited: !limit.is_unlimited(),
            rate,
            burst: limit.burst.max(1.0),
            floor: rate * super::rate_limit::FLOOR_FRACTION,
            increase_per_second: rate / settings.recovery.as_secs_f64().max(1.0),
        }
    }
}

/// Claims due rows within the CloudFront budget, in one autocommit statement, and takes
/// one rate-limit token for each claimed row's first call.
///
/// Rows with a CloudFront id start with a read, so at most as many are claimed as the read
/// bucket has whole tokens now. Rows without one start with a create, limited the same way
/// by the mutating bucket, or make no call at all. A due row that finds no token is left
/// exactly as it was, still due, so it costs nothing until tokens are there. The row
/// classes must match `lifecycle::decide`'s first action: a row whose check starts
/// otherwise only wastes its token or takes another one itself.
///
/// A bucket whose rate is effectively unlimited is not touched at all. Both bucket rows are
/// locked for the length of the statement, so concurrent claims and takes queue on them and
/// no token is handed out twice.
pub async fn claim_within_budget(
    executor: impl PgExecutor<'_>,
    request: &ClaimRequest<'_>,
) -> Result<Vec<Claimed>, StoreError> {
    let read = BucketParams::new(request.rate_limits.read, request.rate_limits);
    let mutating = BucketParams::new(request.rate_limits.mutating, request.rate_limits);
    let limit = request.limit as i64;
    let records = sqlx::query_as!(
        Record,
        r#"
        with read_bucket as materialized (
            select least($5, tokens + greatest(0, extract(epoch from now() - refilled_at)::float8)
                                      * coalesce(rate, $4)) as refilled
            from cloudfront_rate_limits
            where bucket = 'read' and $3
            for update
        ), mutating_bucket as materialized (
            select least($10, tokens + greatest(0, extract(epoch from now() - refilled_at)::float8)
                                       * coalesce(rate, $9)) as refilled
            from cloudfront_rate_limits
            where bucket = 'mutating' and $8
            for update
        ), budget as materialized (
            select least($1, coalesce((select greatest(0, floor(refilled))::int8 from read_bucket), $1)) as reads,
                   least($1, coalesce((select greatest(0, floor(refilled))::int8 from mutating_bucket), $1)) as creates
        ), waits as materialized (
            -- Only when reads are scarce: the longest waits first.
            select id from distributions
            where next_check_at <= now()
              and status in ('deploying', 'updating', 'disabling')
              and cloudfront_id is not null
              and $13 and (select reads < $1 from budget)
            order by waiting_since, next_check_at
            limit (select reads from budget)
            for update skip locked
        ), reads as materialized (
            select id from distributions
            where next_check_at <= now() and cloudfront_id is not null
              and id not in (select id from waits)
            order by next_check_at
            limit (select reads from budget) - (select count(*) from waits)
            for update skip locked
        ), creates as materialized (
            select id from distributions
            where next_check_at <= now() and cloudfront_id is null
              and status not in ('failed', 'deleted') and (intent = 'keep' or create_attempted)
            order by next_check_at
            limit least((select creates from budget),
                        $1 - (select count(*) from waits) - (select count(*) from reads))
            for update skip locked
        ), no_calls as materialized (
            select id from distributions
            where next_check_at <= now() and cloudfront_id is null
              and not (status not in ('failed', 'deleted') and (intent = 'keep' or create_attempted))
            order by next_check_at
            limit $1 - (select count(*) from waits) - (select count(*) from reads)
                     - (select count(*) from creates)
            for update skip locked
        ), due as (
            select id, 'read' as token from waits
            union all select id, 'read' from reads
            union all select id, 'mutating' from creates
            union all select id, null from no_calls
        ), read_taken as (
            update cloudfront_rate_limits
            set tokens = least($5, tokens + greatest(0, extract(epoch from now() - refilled_at)::float8)
                                            * coalesce(rate, $4))
                         - (select count(*) from due where token = 'read'),
                rate = greatest($6, least($4, coalesce(rate, $4)
                    + $7 * greatest(0, extract(epoch from now() - refilled_at)::float8))),
                refilled_at = greatest(refilled_at, now())
            where bucket = 'read' and $3
        ), mutating_taken as (
            update cloudfront_rate_limits
            set tokens = least($10, tokens + greatest(0, extract(epoch from now() - refilled_at)::float8)
                                             * coalesce(rate, $9))
                         - (select count(*) from due where token = 'mutating'),
                rate = greatest($11, least($9, coalesce(rate, $9)
                    + $12 * greatest(0, extract(epoch from now() - refilled_at)::float8))),
                refilled_at = greatest(refilled_at, now())
            where bucket = 'mutating' and $8
        )
        -- The planner cannot tell how few rows the CTEs return, and a join with them
        -- would scan the table; an array of ids is looked up by primary key.
        update distributions d
        set next_check_at = now() + make_interval(secs => $2),
            lease_token = d.lease_token + 1
        where d.id = any(array(select id from due))
        returning d.*, now() as "db_now?"
        "#,
        limit,
        request.lease_seconds,
        read.limited,
        read.rate,
        read.burst,
        read.floor,
        read.increase_per_second,
        mutating.limited,
        mutating.rate,
        mutating.burst,
        mutating.floor,
        mutating.increase_per_second,
        request.prioritize_waits,
    )
    .fetch_all(executor)
    .await?;

    let mut claimed = parse_claimed(records);
    for claim in &mut claimed {
        claim.token = first_call_bucket(&claim.row);
    }
    Ok(claimed)
}

/// Returns the bucket the claim took a token from for `row`, by the same classes as the
/// SQL of [`claim_within_budget`]. A row with a CloudFront id starts with a read. One
/// without starts with a create, unless it is finished or should go before any create was
/// sent.
fn first_call_bucket(row: &Distribution) -> Option<Bucket> {
    if row.cloudfront_id.is_some() {
        return Some(Bucket::Read);
    }
    let finished = matches!(row.status, Status::Failed | Status::Deleted);
    let needs_create = !row.intent.wants_disabled() || row.create_attempted;
    (!finished && needs_create).then_some(Bucket::Mutating)
}

/// When rows come due and when the buckets next hold a token, as one probe reads them.
/// Seconds on the database's clock; negative when a row is overdue.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Outlook {
    /// The next row with a CloudFront id (it starts with a read), if any is queued.
    pub next_read_due: Option<f64>,
    /// The next row without one (a create, or no call), if any is queued.
    pub next_other_due: Option<f64>,
    /// Seconds until the read bucket has a whole token: 0 when it has one or is unlimited.
    pub read_token_in: f64,
    /// The same for the mutating bucket.
    pub mutating_token_in: f64,
}

impl Outlook {
    /// Returns the seconds until a claim would take a row (0 or less: now), or `None` when
    /// no row is queued. A due row counts only once its bucket has a token, so a claim loop
    /// that sleeps this long neither spins on rows it cannot pay for nor misses a row due
    /// at a known time.
    pub fn seconds_until_claimable(&self) -> Option<f64> {
        let read = self.next_read_due.map(|due| due.max(self.read_token_in));
        let other = self
            .next_other_due
            .map(|due| due.max(self.mutating_token_in));
        match (read, other) {
            (Some(read), Some(other)) => Some(read.min(other)),
            (read, other) => read.or(other),
        }
    }
}

/// Reads the [`Outlook`] in one statement: two probes of the due indexes and, for limited
/// buckets, their token rows (read without locking them).
pub async fn outlook(
    executor: impl PgExecutor<'_>,
    rate_limits: &RateLimitSettings,
) -> Result<Outlook, StoreError> {
    let read = BucketParams::new(rate_limits.read, rate_limits);
    let mutating = BucketParams::new(rate_limits.mutating, rate_limits);
    let row = sqlx::query!(
        r#"
        select
            (select extract(epoch from min(next_check_at) - now())::float8
             from distributions
             where next_check_at is not null and cloudfront_id is not null) as next_read_due,
            (select extract(epoch from min(next_check_at) - now())::float8
             from distributions
             where next_check_at is not null and cloudfront_id is null) as next_other_due,
            (select greatest(0, (1 - least($2, tokens
                    + greatest(0, extract(epoch from now() - refilled_at)::float8)
                      * coalesce(rate, $1))) / coalesce(rate, $1))
             from cloudfront_rate_limits
             where bucket = 'read' and $3) as read_token_in,
            (select greatest(0, (1 - least($5, tokens
                    + greatest(0, extract(epoch from now() - refilled_at)::float8)
                      * coalesce(rate, $4))) / coalesce(rate, $4))
             from cloudfront_rate_limits
             where bucket = 'mutating' and $6) as mutating_token_in
        "#,
        read.rate,
        read.burst,
        read.limited,
        mutating.rate,
        mutating.burst,
        mutating.limited,
    )
    .fetch_one(executor)
    .await?;
    Ok(Outlook {
        next_read_due: row.next_read_due,
        next_other_due: row.next_other_due,
        read_token_in: row.read_token_in.unwrap_or(0.0),
        mutating_token_in: row.mutating_token_in.unwrap_or(0.0),
    })
}

/// Everything a check learned, written back under the lease it claimed with.
#[derive(Clone, Debug)]
pub struct WriteBack {
    pub status: Status,
    pub reason: String,
    pub cloudfront_id: Option<String>,
    pub arn: Option<String>,
    pub domain_name: Option<String>,
    pub etag: Option<String>,
    pub cloudfront_status: Option<String>,
    pub cloudfront_enabled: Option<bool>,
    /// Seconds until the next check; `None` takes the row out of the queue.
    pub next_check_in: Option<f64>,
    pub failures: i32,
    pub checks: i32,
    pub wait_started: bool,
    pub disable_confirmed: bool,
    pub enabled_reads: i32,
    /// Sets the last error shown in the resource; `None` keeps the one there.
    pub error: Option<(String, String)>,
    pub overdue: bool,
    pub create_attempted: bool,
    /// The spec version this check sent to CloudFront (create or update), if any.
    pub applied_spec_version: Option<i32>,
    /// The ETag the service's own update returned, kept while the row is `updating`.
    pub update_etag: Option<String>,
}

/// Writes a check's result if the lease token still matches, recording a history row when
/// the status changed. Returns false when the lease was lost: another worker claimed the row
/// or a user changed its intent, and this result must be dropped.
pub async fn write_back(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    lease_token: i64,
    update: &WriteBack,
) -> Result<bool, StoreError> {
    let written = write_back_many(executor, &[(id, lease_token, update)]).await?;
    Ok(written.contains(&id))
}

/// Writes the results of several checks in one statement, each fenced by its own lease
/// token exactly as [`write_back`] fences one, and returns the ids of the rows written. A
/// row whose lease was lost is left alone without affecting the others.
///
/// Rows are locked in id order, so two batches that share rows (possible only when a lease
/// ran out under a slow check) wait for each other instead of deadlocking. Each id should
/// appear once: for a repeated id at most the entry holding the current token is written.
pub async fn write_back_many(
    executor: impl PgExecutor<'_>,
    entries: &[(Uuid, i64, &WriteBack)],
) -> Result<Vec<Uuid>, StoreError> {
    let columns = WriteBackColumns::from_entries(entries);
    let written = sqlx::query_scalar!(
        r#"
        with input as (
            select *
            from unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
                        $7::text[], $8::text[], $9::text[], $10::bool[], $11::float8[],
                        $12::int4[], $13::int4[], $14::bool[], $15::bool[], $16::int4[],
                        $17::text[], $18::text[], $19::bool[], $20::bool[], $21::int4[],
                        $22::text[])
                as input(id, lease_token, status, reason, cloudfront_id, arn, domain_name,
                         etag, cloudfront_status, cloudfront_enabled, next_check_in, failures,
                         checks, wait_started, disable_confirmed, enabled_reads, error_code,
                         error_message, overdue, create_attempted, applied_spec_version,
                         update_etag)
        ), previous as (
            -- True when a field the API shows changes. Only then do the version (the
            -- ETag) and updated_at change, so a recheck that learns nothing new leaves
            -- both alone.
            select input.*, d.status as from_status,
                   d.status <> input.status
                   or input.error_code is distinct from null
                      and (input.error_code, input.error_message)
                          is distinct from (d.last_error_code, d.last_error_message)
                   or d.overdue <> input.overdue
                   or coalesce(input.cloudfront_id, d.cloudfront_id) is distinct from d.cloudfront_id
                   or coalesce(input.arn, d.arn) is distinct from d.arn
                   or coalesce(input.domain_name, d.domain_name) is distinct from d.domain_name
                   or coalesce(input.cloudfront_status, d.cloudfront_status)
                      is distinct from d.cloudfront_status
                   or coalesce(input.cloudfront_enabled, d.cloudfront_enabled)
                      is distinct from d.cloudfront_enabled
                   as visible_change
            from distributions d
            join input on input.id = d.id and input.lease_token = d.lease_token
            order by d.id
            for update of d
        ), updated as (
            update distributions d
            set status = p.status,
                cloudfront_id = coalesce(p.cloudfront_id, d.cloudfront_id),
                arn = coalesce(p.arn, d.arn),
                domain_name = coalesce(p.domain_name, d.domain_name),
                etag = coalesce(p.etag, d.etag),
                cloudfront_status = coalesce(p.cloudfront_status, d.cloudfront_status),
                cloudfront_enabled = coalesce(p.cloudfront_enabled, d.cloudfront_enabled),
                next_check_at = case when p.next_check_in is null then null
                                     else now() + make_interval(secs => p.next_check_in) end,
                failures = p.failures,
                checks = p.checks,
                waiting_since = case when p.wait_started then now() else d.waiting_since end,
                disable_confirmed = p.disable_confirmed,
                enabled_reads = p.enabled_reads,
                last_error_code = coalesce(p.error_code, d.last_error_code),
                last_error_message = coalesce(p.error_message, d.last_error_message),
                last_error_at = case when p.error_code is null then d.last_error_at else now() end,
                overdue = p.overdue,
                create_attempted = d.create_attempted or p.create_attempted,
                applied_spec_version = greatest(d.applied_spec_version,
                                                coalesce(p.applied_spec_version, 0)),
                update_etag = p.update_etag,
                deleted_at = case when p.status = 'deleted' then coalesce(d.deleted_at, now())
                                  else d.deleted_at end,
                version = d.version + case when p.visible_change then 1 else 0 end,
                updated_at = case when p.visible_change then now() else d.updated_at end
            from previous p
            where d.id = p.id
            returning d.id, p.from_status, d.status as to_status, p.reason
        ), event as (
            insert into distribution_events (distribution_id, from_status, to_status, reason)
            select id, from_status, to_status, reason from updated where from_status <> to_status
        )
        select id as "id!" from updated
        "#,
        &columns.ids,
        &columns.lease_tokens,
        &columns.statuses as &[&str],
        &columns.reasons as &[&str],
        &columns.cloudfront_ids as &[Option<&str>],
        &columns.arns as &[Option<&str>],
        &columns.domain_names as &[Option<&str>],
        &columns.etags as &[Option<&str>],
        &columns.cloudfront_statuses as &[Option<&str>],
        &columns.cloudfront_enabled as &[Option<bool>],
        &columns.next_check_ins as &[Option<f64>],
        &columns.failures,
        &columns.checks,
        &columns.wait_started,
        &columns.disable_confirmed,
        &columns.enabled_reads,
        &columns.error_codes as &[Option<&str>],
        &columns.error_messages as &[Option<&str>],
        &columns.overdue,
        &columns.create_attempted,
        &columns.applied_spec_versions as &[Option<i32>],
        &columns.update_etags as &[Option<&str>],
    )
    .fetch_all(executor)
    .await?;
    Ok(written)
}

/// The fields of a batch of write-backs, one array per column, for `unnest`.
#[derive(Default)]
struct WriteBackColumns<'a> {
    ids: Vec<Uuid>,
    lease_tokens: Vec<i64>,
    statuses: Vec<&'a str>,
    reasons: Vec<&'a str>,
    cloudfront_ids: Vec<Option<&'a str>>,
    arns: Vec<Option<&'a str>>,
    domain_names: Vec<Option<&'a str>>,
    etags: Vec<Option<&'a str>>,
    cloudfront_statuses: Vec<Option<&'a str>>,
    cloudfront_enabled: Vec<Option<bool>>,
    next_check_ins: Vec<Option<f64>>,
    failures: Vec<i32>,
    checks: Vec<i32>,
    wait_started: Vec<bool>,
    disable_confirmed: Vec<bool>,
    enabled_reads: Vec<i32>,
    error_codes: Vec<Option<&'a str>>,
    error_messages: Vec<Option<&'a str>>,
    overdue: Vec<bool>,
    create_attempted: Vec<bool>,
    applied_spec_versions: Vec<Option<i32>>,
    update_etags: Vec<Option<&'a str>>,
}

impl<'a> WriteBackColumns<'a> {
    fn from_entries(entries: &[(Uuid, i64, &'a WriteBack)]) -> Self {
        let mut columns = WriteBackColumns::default();
        for &(id, lease_token, update) in entries {
            columns.ids.push(id);
            columns.lease_tokens.push(lease_token);
            columns.statuses.push(update.status.as_str());
            columns.reasons.push(&update.reason);
            columns.cloudfront_ids.push(update.cloudfront_id.as_deref());
            columns.arns.push(update.arn.as_deref());
            columns.domain_names.push(update.domain_name.as_deref());
            columns.etags.push(update.etag.as_deref());
            columns
                .cloudfront_statuses
                .push(update.cloudfront_status.as_deref());
            columns.cloudfront_enabled.push(update.cloudfront_enabled);
            columns.next_check_ins.push(update.next_check_in);
            columns.failures.push(update.failures);
            columns.checks.push(update.checks);
            columns.wait_started.push(update.wait_started);
            columns.disable_confirmed.push(update.disable_confirmed);
            columns.enabled_reads.push(update.enabled_reads);
            let (error_code, error_message) = update
                .error
                .as_ref()
                .map(|(code, message)| (code.as_str(), message.as_str()))
                .unzip();
            columns.error_codes.push(error_code);
            columns.error_messages.push(error_message);
            columns.overdue.push(update.overdue);
            columns.create_attempted.push(update.create_attempted);
            columns
                .applied_spec_versions
                .push(update.applied_spec_version);
            columns.update_etags.push(update.update_etag.as_deref());
        }
        columns
    }
}

/// Records, under the lease, a status change made before a call (so the history shows
/// `disabling` or `deleting` while the call runs) and that a create is about to be sent.
/// Returns false when the lease was lost.
pub async fn record_before_call(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    lease_token: i64,
    status: Status,
    reason: &str,
    create_attempted: bool,
) -> Result<bool, StoreError> {
    let written = sqlx::query_scalar!(
        r#"
        with previous as (
            select id, status from distributions
            where id = $1 and lease_token = $2
            for update
        ), updated as (
            update distributions d
            set status = $3,
                create_attempted = d.create_attempted or $5,
                creates_unresolved = d.creates_unresolved + case when $5 then 1 else 0 end,
                version = d.version + case when d.status <> $3 then 1 else 0 end,
                updated_at = case when d.status <> $3 then now() else d.updated_at end
            from previous
            where d.id = previous.id
            returning d.id, previous.status as from_status, d.status as to_status
        ), event as (
            insert into distribution_events (distribution_id, from_status, to_status, reason)
            select id, from_status, to_status, $4 from updated where from_status <> to_status
        )
        select count(*) as "count!" from updated
        "#,
        id,
        lease_token,
        status.as_str(),
        reason,
        create_attempted,
    )
    .fetch_one(executor)
    .await?;
    Ok(written == 1)
}

/// The end of a CreateDistribution call that returned no distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    /// No definitive response (a timeout, a 5xx, a lost response), so it may have created one.
    Uncertain,
    /// CloudFront rejected or throttled it, so this call created nothing.
    Rejected,
}

/// Records how a failed create ended, whether or not the lease still holds: like
/// [`record_created_identity`] these are facts. An uncertain end is remembered for good. A
/// rejection clears `create_attempted` only when no other create is outstanding (one sent
/// under an older lease may still be in flight) and none was uncertain, so a later delete of
/// a row CloudFront never accepted needs no CloudFront call. Returns `create_attempted`
/// afterwards.
///
/// NOTE: an uncertain create that ends after its row was deleted is recorded but not acted
/// on, so a distribution it may have made is found only by a sweep on the row-id tag.
pub async fn record_create_outcome(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    outcome: CreateOutcome,
) -> Result<bool, StoreError> {
    let uncertain = outcome == CreateOutcome::Uncertain;
    let create_attempted = sqlx::query_scalar!(
        r#"
        update distributions
        set create_uncertain = create_uncertain or $2,
            creates_unresolved = case when $2 then creates_unresolved
                                      else greatest(creates_unresolved - 1, 0) end,
            create_attempted = create_attempted
                and (create_uncertain or $2 or creates_unresolved > 1)
        where id = $1
        returning create_attempted
        "#,
        id,
        uncertain,
    )
    .fetch_one(executor)
    .await?;
    Ok(create_attempted)
}

/// Records the identity of a distribution CloudFront created for this row even when the
/// lease was lost meanwhile: these are facts, not decisions, and keeping them saves the next
/// worker a create call that would only answer DistributionAlreadyExists.
///
/// A create from a check that lost its lease can land after the row was deleted (its first
/// distribution deleted, or none made): the new distribution then belongs to no live row.
/// Such a row is reopened as `disabling` with this id, due now, so the worker deletes it too.
pub async fn record_created_identity(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    cloudfront_id: &str,
    arn: &str,
    domain_name: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"
        with late as (
            select id, status from distributions
            where id = $1
              and (cloudfront_id is null
                   or (status = 'deleted' and intent <> 'keep' and cloudfront_id <> $2))
            for update
        ), updated as (
            update distributions d
            set cloudfront_id = $2, arn = $3, domain_name = $4, create_attempted = true,
                status = case when late.status = 'deleted' then 'disabling' else d.status end,
                next_check_at = case when late.status = 'deleted' then now()
                                     else d.next_check_at end,
                deleted_at = case when late.status = 'deleted' then null else d.deleted_at end,
                disable_confirmed = d.disable_confirmed and late.status <> 'deleted',
                enabled_reads = case when late.status = 'deleted' then 0 else d.enabled_reads end,
                lease_token = d.lease_token + case when late.status = 'deleted' then 1 else 0 end,
                -- The resource gains (or changes) its cloudfront part, so its ETag changes.
                version = d.version + 1,
                updated_at = now()
            from late
            where d.id = late.id
            returning d.id, late.status as from_status, d.status as to_status
        )
        insert into distribution_events (distribution_id, from_status, to_status, reason)
        select id, from_status, to_status,
               'a create sent before the deletion made another distribution; deleting it'
        from updated where from_status <> to_status
        "#,
        id,
        cloudfront_id,
        arn,
        domain_name,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Hands rows back at shutdown so another replica takes them at once rather than after
/// the lease. Only rows still held under the given tokens are touched.
pub async fn release(
    executor: impl PgExecutor<'_>,
    leases: &[(Uuid, i64)],
) -> Result<u64, StoreError> {
    let (ids, tokens): (Vec<Uuid>, Vec<i64>) = leases.iter().copied().unzip();
    let result = sqlx::query!(
        r#"
        update distributions d
        set next_check_at = now(), lease_token = d.lease_token + 1
        from unnest($1::uuid[], $2::int8[]) as held(id, lease_token)
        where d.id = held.id and d.lease_token = held.lease_token
          and d.next_check_at is not null
        "#,
        &ids,
        &tokens,
    )
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::Outlook;

    #[test]
    fn outlook_empty_queue_is_none() {
        assert_eq!(Outlook::default().seconds_until_claimable(), None);
    }

    #[test]
    fn outlook_due_row_waits_for_its_token() {
        let outlook = Outlook {
            next_read_due: Some(-5.0),
            read_token_in: 0.2,
            ..Outlook::default()
        };
        assert_eq!(outlook.seconds_until_claimable(), Some(0.2));
    }

    #[test]
    fn outlook_other_bucket_token_does_not_count() {
        // A mutating token does not make a due read claimable.
        let outlook = Outlook {
            next_read_due: Some(-1.0),
            read_token_in: 0.5,
            mutating_token_in: 0.0,
            ..Outlook::default()
        };
        assert_eq!(outlook.seconds_until_claimable(), Some(0.5));
    }

    #[test]
    fn outlook_earliest_class_wins() {
        let outlook = Outlook {
            next_read_due: Some(30.0),
            next_other_due: Some(-1.0),
            read_token_in: 0.0,
            mutating_token_in: 2.0,
        };
        assert_eq!(outlook.seconds_until_claimable(), Some(2.0));
    }
}
