-- PostgreSQL port of migrations/0002_guild_settings.sql. pro_allowed is a real BOOLEAN here.
CREATE TABLE guild_settings (
    guild_id            TEXT    PRIMARY KEY,
    required_role_id    TEXT,
    cooldown_seconds    INTEGER CHECK (cooldown_seconds IS NULL OR cooldown_seconds >= 0),
    max_jobs_per_user   INTEGER CHECK (max_jobs_per_user IS NULL OR max_jobs_per_user >= 1),
    pro_allowed         BOOLEAN,
    audit_channel_id    TEXT,
    daily_allowance     INTEGER CHECK (daily_allowance IS NULL OR daily_allowance >= 0),
    updated_by          TEXT,
    updated_at          DOUBLE PRECISION
);

-- Channels where /sora may be used; no row for a server = every channel.
CREATE TABLE guild_channels (
    guild_id    TEXT NOT NULL,
    channel_id  TEXT NOT NULL,
    added_by    TEXT,
    added_at    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);

-- Terms refused in prompts, stored normalised (NFKC, casefolded, single spaces).
CREATE TABLE guild_blocked_terms (
    guild_id    TEXT NOT NULL,
    term        TEXT NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('word', 'substring')),
    added_by    TEXT,
    added_at    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (guild_id, term)
);

-- Cooldown and "unfinished jobs per user" look up a user's jobs in one server.
CREATE INDEX jobs_by_guild_user ON jobs (guild_id, user_id, id);
