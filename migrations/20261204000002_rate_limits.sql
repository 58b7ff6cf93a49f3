-- Account-wide CloudFront token buckets, shared by every replica: one row per bucket.
-- Replicas pass the configured rate and burst with each request, so the row keeps only
-- what changes: the tokens left, when they were last refilled, and the current rate after
-- throttling cut it.
create table cloudfront_rate_limits (
    bucket text primary key check (bucket in ('mutating', 'read')),
    -- Tokens left at refilled_at. Negative while callers hold reservations: a caller that
    -- takes a token before it is ready waits until the refill has covered it. A new bucket
    -- starts full: the first take cuts 'Infinity' down to the burst.
    tokens float8 not null default 'Infinity',
    refilled_at timestamptz not null default now(),
    -- Calls per second now allowed; null until a replica first takes a token and sets it to
    -- the configured rate. Halved on Throttling, then raised a little each second.
    rate float8,
    -- The last time Throttling cut the rate, so a burst of throttled calls cuts it once.
    decreased_at timestamptz
);

insert into cloudfront_rate_limits (bucket) values ('mutating'), ('read');

-- Finished rows are purged by age; this keeps the purge from scanning live rows.
create index distributions_deleted_at on distributions (deleted_at) where deleted_at is not null;
