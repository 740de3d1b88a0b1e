-- 010: every rejected quote says which hygiene rule it broke and what was received.
ALTER TABLE quote_rejects ADD COLUMN rule VARCHAR;   -- crossed, expired, bad_strike, bad_symbol, unparseable
ALTER TABLE quote_rejects ADD COLUMN raw VARCHAR;    -- the quote as received: the source's line or its fields
