-- Set when a CreateDistribution call ended without a definitive answer (a timeout, a 5xx, a
-- lost response), so CloudFront may hold a distribution made with this row's CallerReference.
-- While it is false, a create that CloudFront rejected outright clears create_attempted: the
-- rejection proves nothing was made, and a later delete can then finish without any call.
alter table distributions add column create_uncertain boolean not null default false;
