-- Operator spending caps (SERVER_DAILY_CREDITS, GLOBAL_DAILY_CREDITS): what one server, or every
-- server together, spent on a UTC day is summed from the ledger's reserves and refunds of that day.
CREATE INDEX ledger_by_day ON ledger (day, guild_id);
