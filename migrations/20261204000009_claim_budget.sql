-- Indexes for the worker's budget-aware claim.
--
-- Rows without a CloudFront id need a create (a mutating call) or no call at all, never a
-- read. The claim takes them apart from the rows that need a read, so it walks this small
-- index instead of skipping past every due row that has an id.
create index distributions_due_uncreated on distributions (next_check_at)
    where next_check_at is not null and cloudfront_id is null;

-- When reads are scarce under the adaptive schedule, the claim takes the rows that have
-- waited longest for Deployed first, because they are the likeliest to have finished.
create index distributions_due_waiting on distributions (waiting_since, next_check_at)
    where next_check_at is not null and status in ('deploying', 'updating', 'disabling');
