-- Updates: the API records a new desired configuration (spec) and bumps spec_version; the
-- worker applies it with UpdateDistribution and records the version it applied.
alter table distributions drop constraint distributions_status_check;
alter table distributions add constraint distributions_status_check check (status in (
    'creating', 'deploying', 'deployed', 'updating', 'disabling', 'deleting', 'deleted', 'disabled', 'failed'
));
alter table distributions
    add column spec_version integer not null default 1,
    add column applied_spec_version integer not null default 0;

-- Rows created before this migration were created with their current spec, if at all.
update distributions set applied_spec_version = spec_version where cloudfront_id is not null;

-- Idempotency-Key of POST /v1/distributions: the same key and body from the same owner
-- returns the original response instead of creating again.
create table idempotency_keys (
    owner text not null,
    key text not null,
    -- SHA-256 of the request body as parsed, so a different body under the same key is caught.
    request_hash text not null,
    distribution_id uuid not null references distributions (id) on delete cascade,
    response jsonb not null,
    created_at timestamptz not null default now(),
    primary key (owner, key)
);

create index idempotency_keys_created on idempotency_keys (created_at);
