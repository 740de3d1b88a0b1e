-- 014: futures. Quotes of futures contracts (fetch_chains, when its params name
-- futures roots), and variation margin: a futures fill moves no premium cash; its P&L
-- is paid into cash_ledger (kind 'variation') as the position is marked, at each fill
-- and at each session's settlement.

-- Futures quotes at a snapshot; a session's settlement is the quote at its close.
-- Key: (as_of, quote_time, contract).
CREATE TABLE futures_quotes (
    as_of        DATE NOT NULL,
    quote_time   TIMESTAMP NOT NULL,       -- New York
    root         VARCHAR NOT NULL,         -- MES
    contract     VARCHAR NOT NULL,         -- MESZ25
    expiry       DATE NOT NULL,            -- last trading day
    multiplier   INTEGER NOT NULL,
    bid          DECIMAL(18,4) NOT NULL,
    ask          DECIMAL(18,4) NOT NULL,
    last         DECIMAL(18,4) NOT NULL,   -- the settlement price at a close
    source       VARCHAR NOT NULL,
    run_id       BIGINT NOT NULL
);

-- Each futures position's chain of marks, per (strategy, instrument), in order (seq
-- 0, 1, ...): every fill marks the position held before it at the fill's price, every
-- settlement at the settlement price. amount = held × multiplier × (mark − previous
-- mark), paid into cash_ledger (kind 'variation', reference = this row's reference)
-- when not zero. So the variation paid on a position equals, exactly,
-- Σ fills quantity × multiplier × (last mark − fill price) (what `optdesk check`
-- verifies), and a closed position has been paid −Σ quantity × multiplier × price.
CREATE TABLE futures_variation (
    strategy     VARCHAR NOT NULL,
    instrument   VARCHAR NOT NULL,
    seq          INTEGER NOT NULL,
    as_of        DATE NOT NULL,            -- the session it was paid on (cash_ledger.as_of)
    marked_at    TIMESTAMP NOT NULL,       -- the fill's time, or the settlement's (the close)
    cause        VARCHAR NOT NULL,         -- 'fill' or 'settlement'
    held_before  BIGINT NOT NULL,          -- contracts held before this mark
    held_after   BIGINT NOT NULL,          -- after it (a fill's quantity added)
    multiplier   INTEGER NOT NULL,
    prev_mark    DECIMAL(18,4),            -- NULL for the first row
    mark         DECIMAL(18,4) NOT NULL,
    amount       DECIMAL(18,4) NOT NULL,
    reference    VARCHAR NOT NULL UNIQUE,  -- the fill's exec id, or variation:<strategy>:<instrument>:<session>
    run_id       BIGINT NOT NULL,
    UNIQUE (strategy, instrument, seq)
);

-- Marks as in 006, and a future's: its mid at qt less the last variation mark (the
-- variation already paid holds the rest), so market value + cash stays the equity.
CREATE OR REPLACE MACRO position_marks(d, qt) AS TABLE
WITH pos AS (SELECT * FROM positions_as_of(d)),
     today AS (SELECT contract, (bid + ask) / 2 AS mid FROM option_quotes
               WHERE as_of = d AND quote_time = qt AND bid > 0 AND ask >= bid),
     before AS (SELECT contract, arg_max((bid + ask) / 2, quote_time) AS mid, max(as_of) AS on_date
                FROM option_quotes WHERE as_of <= d AND bid > 0 AND ask >= bid
                  AND contract IN (SELECT instrument FROM pos WHERE kind = 'option')
                GROUP BY contract),
     fut AS (SELECT contract, arg_max((bid + ask) / 2, quote_time) AS mid, max(as_of) AS on_date,
                    bool_or(as_of = d AND quote_time = qt) AS fresh
             FROM futures_quotes WHERE as_of <= d AND quote_time <= qt
               AND contract IN (SELECT instrument FROM pos WHERE kind = 'future')
             GROUP BY contract),
     vm AS (SELECT strategy, instrument, arg_max(mark, seq) AS mark FROM futures_variation
            WHERE as_of <= d GROUP BY ALL),
     spot AS (SELECT symbol, price FROM underlying_quotes WHERE as_of = d AND quote_time = qt),
     greeks AS (SELECT contract, delta, theta_per_day, vega FROM option_analytics
                WHERE as_of = d AND quote_time = qt)
SELECT p.*,
       CASE WHEN p.kind = 'shares' THEN s.price
            WHEN p.kind = 'future' THEN coalesce(f.mid, v.mark) - v.mark
            ELSE coalesce(t.mid, b.mid) END::DOUBLE AS mark,
       CASE WHEN p.kind = 'future' THEN NOT coalesce(f.fresh, false)
            ELSE (p.kind = 'option' AND t.mid IS NULL) END AS stale,
       CASE WHEN p.kind = 'future' THEN f.on_date ELSE b.on_date END AS marked_on,
       CASE WHEN p.kind = 'shares' THEN p.quantity::DOUBLE
            WHEN p.kind = 'future' THEN p.quantity::DOUBLE * p.multiplier
            ELSE g.delta * p.quantity * p.multiplier END AS delta,
       CASE WHEN p.kind IN ('shares', 'future') THEN 0.0 ELSE g.theta_per_day * p.quantity * p.multiplier END AS theta,
       CASE WHEN p.kind IN ('shares', 'future') THEN 0.0 ELSE g.vega / 100 * p.quantity * p.multiplier END AS vega
FROM pos p LEFT JOIN today t ON t.contract = p.instrument
           LEFT JOIN before b ON b.contract = p.instrument
           LEFT JOIN fut f ON f.contract = p.instrument
           LEFT JOIN vm v ON v.strategy = p.strategy AND v.instrument = p.instrument
           LEFT JOIN spot s ON s.symbol = p.underlying
           LEFT JOIN greeks g ON g.contract = p.instrument;
