-- PostgreSQL port of migrations/0005_leases.sql.
-- lease_owner: "host:pid:random" of the runner working the job (kept after the job ends, as a record);
-- lease_expires_at: when another process may take the job over (NULL = free, and always NULL once finished).
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at DOUBLE PRECISION;
-- Claims look for unfinished jobs whose lease is free or expired.
CREATE INDEX jobs_by_state_lease ON jobs (state, lease_expires_at);
