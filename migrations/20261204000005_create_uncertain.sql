-- Set when a CreateDistribution call ended without a definitive answer (a timeout, a 5xx, a
-- lost response), so CloudFront may hold a distribution made with this row's CallerReference.
alter table distributions add column create_uncertain boolean not null default false;

-- Creates sent and not yet answered by a rejection. A check can lose its lease while its create
-- is still in flight, and another check may send the same create meanwhile; only when no
-- create is outstanding and none was uncertain does a rejection prove that nothing was made,
-- and then create_attempted is cleared so a later delete finishes without any CloudFront call.
alter table distributions add column creates_unresolved integer not null default 0;
