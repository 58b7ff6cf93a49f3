-- The ETag UpdateDistribution returned for the service's own update. A read with another
-- ETag while the row is `updating` is older than that update (an eventually consistent
-- read) or another actor's change, and is confirmed before the row is called deployed.
alter table distributions add column update_etag text;
