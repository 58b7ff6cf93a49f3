-- One row per CloudFront distribution the service manages, from the moment a user asks for
-- it until well after CloudFront has deleted it.
create table distributions (
    id uuid primary key,
    owner text not null,
    -- The configuration the user asked for, as the API accepted it.
    spec jsonb not null,
    status text not null check (status in (
        'creating', 'deploying', 'deployed', 'disabling', 'deleting', 'deleted', 'disabled', 'failed'
    )),
    -- What the user wants to happen: keep it, delete it, or disable it and keep it (retain).
    intent text not null default 'keep' check (intent in ('keep', 'delete', 'retain')),
    -- Fixed before the first CreateDistribution call and reused on every retry, so a retry can
    -- never create a second distribution.
    caller_reference text not null unique,
    -- Set once a Create call may have reached CloudFront, so a deletion cannot skip it.
    create_attempted boolean not null default false,
    cloudfront_id text,
    arn text,
    domain_name text,
    etag text,
    -- What the last GetDistribution returned: 'InProgress' or 'Deployed', and Enabled.
    cloudfront_status text,
    cloudfront_enabled boolean,
    -- When the worker should look at the row next; null when there is nothing to do. Claiming
    -- pushes it forward by the lease, so a row held by a dead worker comes due again by itself.
    next_check_at timestamptz,
    -- Bumped on every claim and on every change of intent; each write-back must present the
    -- token it claimed with, so a stale worker cannot overwrite newer state.
    lease_token bigint not null default 0,
    -- Consecutive failed attempts; throttling does not count.
    failures integer not null default 0,
    -- Checks made during the current wait, and when that wait began.
    checks integer not null default 0,
    waiting_since timestamptz,
    -- The service has seen its disable take effect; a later read showing Enabled=true is then
    -- either a stale read or another actor, and is confirmed before anything is done.
    disable_confirmed boolean not null default false,
    -- Consecutive reads that showed Enabled=true after the disable was confirmed.
    enabled_reads integer not null default 0,
    last_error_code text,
    last_error_message text,
    last_error_at timestamptz,
    -- The deletion has taken longer than the configured deadline; it goes on regardless.
    overdue boolean not null default false,
    delete_requested_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deleted_at timestamptz,
    -- The resource's own version, sent to clients as its ETag.
    version bigint not null default 1
);

-- The claim query walks this index in due order; finished rows are not in it.
create index distributions_due on distributions (next_check_at) where next_check_at is not null;

-- Listing a user's distributions, newest first, with a keyset cursor.
create index distributions_owner_created on distributions (owner, created_at desc, id desc);

-- One live row per CloudFront distribution.
create unique index distributions_live_cloudfront_id on distributions (cloudfront_id)
    where cloudfront_id is not null and status <> 'deleted';

-- The row is updated on every check: leave room on each page for HOT updates and vacuum it
-- long before the default 20% of dead rows.
alter table distributions set (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02
);

-- Append-only history of every status change and every change of intent.
create table distribution_events (
    id bigserial primary key,
    distribution_id uuid not null references distributions (id) on delete cascade,
    from_status text,
    to_status text not null,
    reason text not null,
    created_at timestamptz not null default now()
);

create index distribution_events_distribution on distribution_events (distribution_id, id);
