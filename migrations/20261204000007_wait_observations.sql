-- How long recent waits for Deployed took, per kind, so the adaptive recheck schedule can
-- check rarely while completion is unlikely and densely when it is likely. Append-only; the
-- insert that adds an observation prunes its kind to the most recent few hundred.
create table wait_observations (
    id bigserial primary key,
    kind text not null check (kind in ('deploy', 'disable')),
    -- Estimated seconds from the start of the wait to Deployed: the midpoint between the
    -- last read that showed InProgress and the first that showed Deployed.
    seconds float8 not null check (seconds >= 0),
    observed_at timestamptz not null default now()
);

create index wait_observations_kind_id on wait_observations (kind, id desc);
