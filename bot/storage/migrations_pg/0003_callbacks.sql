-- PostgreSQL port of migrations/0003_callbacks.sql.
-- Provider callbacks (bot/callbacks.py): one secret per job, sent in its callback URL.
-- Only the SHA-256 of the secret is kept, so a copy of the database cannot forge callbacks.
-- used_at: when a callback reporting a finished task arrived; a second one is a replay and refused.
CREATE TABLE callback_secrets (
    digest      TEXT    PRIMARY KEY,
    job_id      BIGINT  NOT NULL REFERENCES jobs (id),
    created_at  DOUBLE PRECISION NOT NULL,
    used_at     DOUBLE PRECISION
);
CREATE INDEX callback_secrets_by_job ON callback_secrets (job_id);
