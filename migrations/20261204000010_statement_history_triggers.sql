-- Runs the history triggers once per statement instead of once per row. The worker writes
-- the results of many checks in one statement, and a row trigger paid a PL/pgSQL call, a
-- re-read of the distribution and a separately planned payload function for every history
-- row. The statement triggers below do the same work over the transition table in one pass.
-- What they write is unchanged: one notification per distribution on the events channel,
-- and one webhook delivery with the same payload for each change to deployed, deleted or
-- failed.

drop trigger distribution_events_notify on distribution_events;
drop trigger webhook_on_event on distribution_events;

-- NOTIFY drops repeated identical payloads within a transaction anyway, so one notification
-- per distribution is what the row trigger delivered too.
create function distribution_events_notify_statement() returns trigger
language plpgsql as $$
begin
    perform pg_notify('cloudfront_lifecycle_events', changed.distribution_id::text)
    from (select distinct distribution_id from inserted) as changed;
    return null;
end;
$$;

create trigger distribution_events_notify
    after insert on distribution_events
    referencing new table as inserted
    for each statement execute function distribution_events_notify_statement();

-- The statement that inserted the history rows has already updated the distributions when
-- this after-trigger runs, so the rows joined here are the new ones, as in webhook_enqueue.
create function webhook_on_events() returns trigger
language plpgsql as $$
begin
    insert into webhook_deliveries (id, distribution_id, event_type, payload)
    select change.event_id, d.id, change.to_status,
           webhook_payload(change.event_id, change.to_status, d)
    from (
        select gen_random_uuid() as event_id, distribution_id, to_status
        from inserted
        where to_status in ('deployed', 'deleted', 'failed')
          and from_status is distinct from to_status
    ) as change
    join distributions d on d.id = change.distribution_id;

    if found then
        perform pg_notify('cloudfront_lifecycle_webhooks', '');
    end if;
    return null;
end;
$$;

create trigger webhook_on_event
    after insert on distribution_events
    referencing new table as inserted
    for each statement execute function webhook_on_events();

drop function webhook_on_event();
drop function distribution_events_notify();
