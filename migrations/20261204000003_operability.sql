-- Live status and lifecycle notifications.

-- Every history row wakes the watchers of its distribution on every replica. The payload is
-- only the distribution id: watchers re-read the history after the last row they sent, so a
-- lost or merged notification can delay an update but never drop one. NOTIFY is sent at
-- commit, so a watcher never sees a notification before the row is visible.
create function distribution_events_notify() returns trigger
language plpgsql as $$
begin
    perform pg_notify('cloudfront_lifecycle_events', new.distribution_id::text);
    return null;
end;
$$;

create trigger distribution_events_notify
    after insert on distribution_events
    for each row execute function distribution_events_notify();

-- Lifecycle notifications waiting to be POSTed to the webhook receiver. Rows are written by
-- the triggers below in the transaction that records the change, so a notification exists
-- exactly when the change committed, whether or not a receiver is up at that moment.
create table webhook_deliveries (
    -- The event id sent to the receiver; it is the same on every attempt, so the receiver
    -- can drop duplicates.
    id uuid primary key default gen_random_uuid(),
    distribution_id uuid not null references distributions (id) on delete cascade,
    event_type text not null check (event_type in ('deployed', 'deleted', 'failed', 'overdue')),
    -- The JSON body, fixed when the change committed so every attempt sends the same bytes.
    payload jsonb not null,
    created_at timestamptz not null default now(),
    -- When a dispatcher should try next; null once delivered or abandoned. Claiming pushes it
    -- forward by a lease, as for distributions.
    next_attempt_at timestamptz default now(),
    attempts integer not null default 0,
    delivered_at timestamptz,
    -- Set when the attempts ran out; the row is kept for an operator to inspect.
    abandoned_at timestamptz,
    last_error text,
    last_attempt_at timestamptz
);

create index webhook_deliveries_due on webhook_deliveries (next_attempt_at)
    where next_attempt_at is not null;

-- The body every notification shares: the event and the distribution as it is after the
-- change. The statement that inserted the history row has already updated the distribution
-- when this after-trigger runs, so the row read here is the new one.
create function webhook_payload(event_id uuid, event_type text, distribution distributions)
returns jsonb
language sql stable as $$
    select jsonb_build_object(
        'id', event_id,
        'type', 'distribution.' || event_type,
        'occurred_at', now(),
        'distribution', jsonb_build_object(
            'id', distribution.id,
            'owner', distribution.owner,
            'status', distribution.status,
            'cloudfront_id', distribution.cloudfront_id,
            'domain_name', distribution.domain_name,
            'overdue', distribution.overdue,
            'delete_requested_at', distribution.delete_requested_at,
            'last_error', case when distribution.last_error_code is null then null
                else jsonb_build_object(
                    'code', distribution.last_error_code,
                    'message', distribution.last_error_message,
                    'at', distribution.last_error_at)
                end
        )
    )
$$;

create function webhook_enqueue(target uuid, kind text) returns void
language plpgsql as $$
declare
    target_row distributions;
    event_id uuid := gen_random_uuid();
begin
    select * into target_row from distributions where id = target;
    if not found then
        return;
    end if;
    insert into webhook_deliveries (id, distribution_id, event_type, payload)
    values (event_id, target, kind, webhook_payload(event_id, kind, target_row));
    perform pg_notify('cloudfront_lifecycle_webhooks', '');
end;
$$;

-- deployed, deleted and failed come from the history, which records every status change.
create function webhook_on_event() returns trigger
language plpgsql as $$
begin
    if new.to_status in ('deployed', 'deleted', 'failed')
       and new.from_status is distinct from new.to_status then
        perform webhook_enqueue(new.distribution_id, new.to_status);
    end if;
    return null;
end;
$$;

create trigger webhook_on_event
    after insert on distribution_events
    for each row execute function webhook_on_event();

-- overdue is a flag on the row rather than a status, so it is watched on the row itself.
create function webhook_on_overdue() returns trigger
language plpgsql as $$
begin
    perform webhook_enqueue(new.id, 'overdue');
    return null;
end;
$$;

create trigger webhook_on_overdue
    after update of overdue on distributions
    for each row when (new.overdue and not old.overdue)
    execute function webhook_on_overdue();

-- The metrics task counts rows by status every few seconds; this index lets it do so without
-- reading the whole table.
create index distributions_status on distributions (status);
