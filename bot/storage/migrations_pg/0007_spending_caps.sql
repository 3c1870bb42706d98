-- PostgreSQL port of migrations/0007_spending_caps.sql: a day's spending per server and in total.
CREATE INDEX ledger_by_day ON ledger (day, guild_id);
