-- 008: bounded growth. What each strategy scanned, so a pruned store keeps every quote
-- a decision used; and every prune, so nothing disappears without a record.

-- Per snapshot, per strategy: the (underlying, expiry) slices of the chain it looked at
-- (the expiry it chose within its DTE window). `optdesk prune` keeps their quotes and
-- analytics. Key: (as_of, quote_time, strategy, underlying, expiry).
CREATE TABLE scanned_chains (
    as_of        DATE NOT NULL,
    quote_time   TIMESTAMP NOT NULL,
    strategy     VARCHAR NOT NULL,
    underlying   VARCHAR NOT NULL,
    expiry       DATE NOT NULL,
    run_id       BIGINT NOT NULL
);

-- Every `optdesk prune`: the boundary, what it deleted and kept, the store's size.
CREATE TABLE prunes (
    pruned_at          TIMESTAMP NOT NULL,   -- UTC
    quotes_before      DATE NOT NULL,        -- option quotes and analytics before this date were pruned
    quotes_deleted     BIGINT NOT NULL,
    analytics_deleted  BIGINT NOT NULL,
    quotes_kept        BIGINT NOT NULL,      -- before the boundary, kept by the retention rule
    bytes_before       BIGINT NOT NULL,
    version            VARCHAR NOT NULL
);
