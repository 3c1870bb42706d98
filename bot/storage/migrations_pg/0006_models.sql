-- Models from the catalogue (bot/catalogue): whether the member asked for sound (NULL: the model's
-- default), and the provider a job first went to when it failed over to another host of its model.
ALTER TABLE jobs ADD COLUMN audio BOOLEAN;
ALTER TABLE jobs ADD COLUMN failover_from TEXT;
