-- PostgreSQL port of migrations/0004_job_lineage.sql. private is a real BOOLEAN here.
-- kind: how the job was made; source_job_id: the job it was retried/remixed/continued from.
ALTER TABLE jobs ADD COLUMN source_job_id BIGINT REFERENCES jobs (id);
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'new' CHECK (kind IN ('new', 'retry', 'remix', 'continue'));
-- The provider's id of the source video, for a native remix (POST /v1/videos/{id}/remix).
ALTER TABLE jobs ADD COLUMN source_provider_job_id TEXT;
-- TRUE = deliver the video to the requester by direct message instead of the channel.
ALTER TABLE jobs ADD COLUMN private BOOLEAN NOT NULL DEFAULT FALSE;
-- When the posted video was removed with the Delete button (NULL while it is up).
ALTER TABLE jobs ADD COLUMN result_deleted_at DOUBLE PRECISION;
-- /jobs scope:server pages through a server's jobs, newest first.
CREATE INDEX jobs_by_guild ON jobs (guild_id, id);
