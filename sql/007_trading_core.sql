-- 007: the trading core. An order is an intent (order_legs, one row per leg, committed
-- before anything is sent to a broker) and a life cycle of appended events
-- (order_events: pending → submitted → partly_filled → filled, or cancelled, rejected,
-- expired), never updated in place. `orders` becomes a view with the columns it had,
-- its status the latest event's. Fills carry the time, the broker's execution id
-- (unique: an execution is never recorded twice) and order id, and the option's style
-- and settlement. Order references are ClientOrderIds: strategy:YYYY-MM-DDTHHMM:seq
-- (with an exit:, expire: or flatten: prefix for closes); references written before
-- this migration keep their old form.

CREATE TABLE order_legs (
    order_ref    VARCHAR NOT NULL,
    leg          INTEGER NOT NULL,
    as_of        DATE NOT NULL,
    created_at   TIMESTAMP NOT NULL,       -- the snapshot time the order was decided at (New York)
    strategy     VARCHAR NOT NULL,         -- whose order it is
    book         VARCHAR NOT NULL,         -- whose position the leg moves (usually the strategy)
    intent       VARCHAR NOT NULL,         -- entry, exit, expire, flatten
    instrument   VARCHAR NOT NULL,
    underlying   VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,         -- option, shares, future
    expiry       DATE,
    strike       DECIMAL(18,4),
    put_call     VARCHAR,
    style        VARCHAR,                  -- american, european
    settlement   VARCHAR,                  -- physical, cash
    multiplier   INTEGER NOT NULL,
    quantity     BIGINT NOT NULL,          -- positive buys, negative sells
    order_type   VARCHAR NOT NULL,         -- market, limit, settlement
    limit_net    DECIMAL(18,4),            -- net per unit: + debit, − credit
    settle_price DECIMAL(18,4),            -- a settlement leg's price
    cash_kind    VARCHAR NOT NULL,         -- premium, settlement, assignment
    run_id       BIGINT NOT NULL,
    UNIQUE (order_ref, leg)
);

CREATE TABLE order_events (
    order_ref        VARCHAR NOT NULL,
    seq              INTEGER NOT NULL,     -- 0, 1, 2, ... per order
    event_at         TIMESTAMP NOT NULL,   -- New York
    status           VARCHAR NOT NULL CHECK (status IN
                       ('pending', 'submitted', 'partly_filled', 'filled', 'cancelled', 'rejected', 'expired')),
    broker           VARCHAR NOT NULL,     -- paper, ibkr
    broker_order_id  VARCHAR,
    reason           VARCHAR,              -- why it was rejected or cancelled
    run_id           BIGINT NOT NULL,
    UNIQUE (order_ref, seq)
);

-- The paper broker's own record of what it was sent, as a real broker keeps one: an
-- order it has is never executed twice, and a run that crashed after sending finds its
-- executions here.
CREATE TABLE paper_orders (
    order_ref        VARCHAR NOT NULL UNIQUE,
    broker_order_id  VARCHAR NOT NULL,
    sent_at          TIMESTAMP NOT NULL,
    status           VARCHAR NOT NULL,     -- filled or rejected
    reason           VARCHAR
);
CREATE TABLE paper_executions (
    exec_id          VARCHAR NOT NULL UNIQUE,
    order_ref        VARCHAR NOT NULL,
    leg              INTEGER NOT NULL,
    instrument       VARCHAR NOT NULL,     -- OCC symbol or ticker
    broker_order_id  VARCHAR NOT NULL,
    executed_at      TIMESTAMP NOT NULL,
    quantity         BIGINT NOT NULL,
    price            DECIMAL(18,4) NOT NULL,
    commission       DECIMAL(18,4) NOT NULL
);

-- Orders written before 007: one intent per leg (a reference repeated by the old
-- slot bug gets a ~2, ~3 suffix so the key holds), and its events.
CREATE TEMP TABLE legacy_orders AS
SELECT *, row_number() OVER (PARTITION BY order_ref, leg ORDER BY run_id, strategy) AS rn FROM orders;

INSERT INTO order_legs
SELECT order_ref || CASE WHEN rn > 1 THEN '~' || rn ELSE '' END, leg, as_of,
       as_of + INTERVAL '9 hours 35 minutes', strategy, strategy,
       CASE WHEN order_ref LIKE 'expire:%' THEN 'expire' WHEN order_ref LIKE 'exit:%' THEN 'exit'
            WHEN order_ref LIKE 'flatten:%' THEN 'flatten' ELSE 'entry' END,
       instrument, underlying, kind, expiry, strike, put_call, NULL, NULL, multiplier, quantity,
       CASE WHEN order_ref LIKE 'expire:%' THEN 'settlement' WHEN limit_net IS NULL THEN 'market' ELSE 'limit' END,
       limit_net, NULL, 'premium', run_id
FROM legacy_orders;

INSERT INTO order_events
SELECT ref, s.seq, event_at, s.status, 'paper', NULL, CASE WHEN s.status = 'rejected' THEN reason END, run_id
FROM (SELECT DISTINCT order_ref || CASE WHEN rn > 1 THEN '~' || rn ELSE '' END AS ref,
             as_of + INTERVAL '9 hours 35 minutes' AS event_at, status, reason, run_id
      FROM legacy_orders WHERE leg = 0) o,
     (VALUES (0, 'pending', 'any'), (1, 'submitted', 'filled'), (2, 'filled', 'filled'), (1, 'rejected', 'rejected'))
       AS s(seq, status, final)
WHERE s.final = 'any' OR s.final = o.status;

DROP TABLE orders;

-- Orders as before (one row per leg), with the status of the latest event.
CREATE VIEW orders AS
WITH latest AS (SELECT * FROM order_events
                QUALIFY row_number() OVER (PARTITION BY order_ref ORDER BY seq DESC) = 1)
SELECT l.as_of, l.order_ref, l.strategy, l.leg, l.instrument, l.underlying, l.kind, l.expiry,
       l.strike, l.put_call, l.multiplier, l.quantity, l.limit_net, e.status, e.reason, l.run_id,
       l.intent, l.book, l.created_at, l.order_type, e.broker, e.broker_order_id, e.event_at AS status_at
FROM order_legs l LEFT JOIN latest e USING (order_ref);

-- Fills with their time, execution id and the option's terms.
CREATE TABLE fills_v7 (
    as_of            DATE NOT NULL,
    order_ref        VARCHAR NOT NULL,
    leg              INTEGER NOT NULL,
    strategy         VARCHAR NOT NULL,     -- the book the fill moves
    instrument       VARCHAR NOT NULL,
    underlying       VARCHAR NOT NULL,
    kind             VARCHAR NOT NULL,
    expiry           DATE,
    strike           DECIMAL(18,4),
    put_call         VARCHAR,
    multiplier       INTEGER NOT NULL,
    quantity         BIGINT NOT NULL,
    price            DECIMAL(18,4) NOT NULL,
    commission       DECIMAL(18,4) NOT NULL,
    cash_kind        VARCHAR NOT NULL,
    run_id           BIGINT NOT NULL,
    filled_at        TIMESTAMP NOT NULL,   -- New York
    exec_id          VARCHAR NOT NULL UNIQUE,
    broker_order_id  VARCHAR,
    style            VARCHAR,
    settlement       VARCHAR
);

-- A fill takes the suffix of the order row it belongs to (same reference, leg and
-- run; the same strategy first), so an order repeated by the old slot bug keeps its
-- own fills; its execution id is order_ref#leg, numbered only among repeated fills so
-- it still matches the cash ledger's reference.
INSERT INTO fills_v7
SELECT f.* EXCLUDE (rn) REPLACE (
         f.order_ref || coalesce(
           (SELECT CASE WHEN o.rn > 1 THEN '~' || o.rn ELSE '' END FROM legacy_orders o
            WHERE o.order_ref = f.order_ref AND o.leg = f.leg AND o.run_id = f.run_id
            ORDER BY (o.strategy = f.strategy) DESC, o.rn LIMIT 1), '') AS order_ref),
       f.as_of + INTERVAL '9 hours 35 minutes',
       f.order_ref || '#' || f.leg || CASE WHEN f.rn > 1 THEN '~' || f.rn ELSE '' END, NULL,
       CASE WHEN f.kind = 'option' THEN
         coalesce((SELECT any_value(q.style) FROM option_quotes q WHERE q.contract = f.instrument),
                  CASE WHEN trim(substr(f.instrument, 1, 6)) IN ('SPX', 'SPXW', 'XSP', 'NDX', 'NDXP', 'RUT', 'RUTW', 'VIX', 'VIXW', 'DJX', 'MRUT')
                       THEN 'european' ELSE 'american' END) END,
       CASE WHEN f.kind = 'option' THEN
         coalesce((SELECT any_value(q.settlement) FROM option_quotes q WHERE q.contract = f.instrument),
                  CASE WHEN trim(substr(f.instrument, 1, 6)) IN ('SPX', 'SPXW', 'XSP', 'NDX', 'NDXP', 'RUT', 'RUTW', 'VIX', 'VIXW', 'DJX', 'MRUT')
                       THEN 'cash' ELSE 'physical' END) END
FROM (SELECT *, row_number() OVER (PARTITION BY order_ref, leg ORDER BY run_id, strategy) AS rn FROM fills) f
ORDER BY f.run_id;

DROP TABLE fills;
ALTER TABLE fills_v7 RENAME TO fills;
DROP TABLE legacy_orders;

-- Decisions say what they were about: a strategy's entry, or an approved close.
ALTER TABLE risk_decisions ADD COLUMN intent VARCHAR DEFAULT 'entry';

-- Positions up to a session and a moment, with the option's terms: the one definition
-- behind positions_as_of (a whole session) and positions_at (a moment, New York time).
CREATE MACRO positions_until(d, ts) AS TABLE
SELECT strategy, instrument, underlying, kind, expiry, strike, put_call, multiplier,
       sum(quantity) AS quantity,
       sum(quantity * price) / nullif(sum(quantity), 0) AS avg_price,
       min(as_of) AS opened,
       any_value(style) AS style,
       any_value(settlement) AS settlement
FROM fills
WHERE as_of <= d AND filled_at <= ts
GROUP BY strategy, instrument, underlying, kind, expiry, strike, put_call, multiplier
HAVING sum(quantity) <> 0;

CREATE OR REPLACE MACRO positions_as_of(d) AS TABLE
SELECT * FROM positions_until(d, TIMESTAMP '9999-12-31 00:00:00');

-- SELECT * FROM positions_at(TIMESTAMP '2025-03-14 12:00').
CREATE MACRO positions_at(ts) AS TABLE
SELECT * FROM positions_until(DATE '9999-12-31', ts);
