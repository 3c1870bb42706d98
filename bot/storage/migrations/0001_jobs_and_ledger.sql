-- Jobs: one row per /sora request, moving through the states of bot/jobs/model.py.
CREATE TABLE jobs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    state              TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    provider_job_id    TEXT,
    user_id            TEXT    NOT NULL,
    guild_id           TEXT,
    channel_id         TEXT,
    prompt             TEXT    NOT NULL,
    seconds            INTEGER NOT NULL,
    size               TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    image_path         TEXT,
    image_url          TEXT,
    cost               INTEGER NOT NULL DEFAULT 0,
    progress           REAL,
    status_message_id  TEXT,
    result_message_id  TEXT,
    result_url         TEXT,
    result_expires_at  REAL,
    delivery_note      TEXT,
    error_class        TEXT,
    error_message      TEXT,
    created_at         REAL    NOT NULL,
    submitted_at       REAL,
    finished_at        REAL,
    updated_at         REAL    NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_user ON jobs (user_id, id);

-- The credit ledger: balances are always derived from these rows, never kept in a counter.
-- pool 'daily' entries count against the UTC day in `day`; pool 'extra' never expires.
CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    TEXT    NOT NULL DEFAULT '',
    user_id     TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('reserve', 'capture', 'refund', 'grant')),
    pool        TEXT    NOT NULL CHECK (pool IN ('daily', 'extra')),
    amount      INTEGER NOT NULL,
    job_id      INTEGER REFERENCES jobs (id),
    day         TEXT    NOT NULL,
    actor_id    TEXT,
    note        TEXT,
    created_at  REAL    NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (guild_id, user_id, day);
-- A job is reserved, captured and refunded at most once per pool: the database enforces "exactly once".
CREATE UNIQUE INDEX ledger_once_per_job ON ledger (job_id, kind, pool) WHERE job_id IS NOT NULL;
