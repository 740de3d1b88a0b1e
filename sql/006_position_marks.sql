-- 006: one way to mark positions.

-- Open positions as of day d marked at snapshot qt: options at that snapshot's mid,
-- else (stale = true) the last two-sided mid up to d, from the day marked_on; shares at
-- the underlying's price at qt. Greeks from option_analytics at qt, per position:
-- delta in shares, theta in dollars per calendar day, vega in dollars per vol point.
-- snapshot_benchmarks and the daily report both read it, so they agree.
CREATE MACRO position_marks(d, qt) AS TABLE
WITH pos AS (SELECT * FROM positions_as_of(d)),
     today AS (SELECT contract, (bid + ask) / 2 AS mid FROM option_quotes
               WHERE as_of = d AND quote_time = qt AND bid > 0 AND ask >= bid),
     before AS (SELECT contract, arg_max((bid + ask) / 2, quote_time) AS mid, max(as_of) AS on_date
                FROM option_quotes WHERE as_of <= d AND bid > 0 AND ask >= bid
                  AND contract IN (SELECT instrument FROM pos WHERE kind = 'option')
                GROUP BY contract),
     spot AS (SELECT symbol, price FROM underlying_quotes WHERE as_of = d AND quote_time = qt),
     greeks AS (SELECT contract, delta, theta_per_day, vega FROM option_analytics
                WHERE as_of = d AND quote_time = qt)
SELECT p.*,
       CASE WHEN p.kind = 'shares' THEN s.price ELSE coalesce(t.mid, b.mid) END::DOUBLE AS mark,
       (p.kind = 'option' AND t.mid IS NULL) AS stale,
       b.on_date AS marked_on,
       CASE WHEN p.kind = 'shares' THEN p.quantity::DOUBLE ELSE g.delta * p.quantity * p.multiplier END AS delta,
       CASE WHEN p.kind = 'shares' THEN 0.0 ELSE g.theta_per_day * p.quantity * p.multiplier END AS theta,
       CASE WHEN p.kind = 'shares' THEN 0.0 ELSE g.vega / 100 * p.quantity * p.multiplier END AS vega
FROM pos p LEFT JOIN today t ON t.contract = p.instrument
           LEFT JOIN before b ON b.contract = p.instrument
           LEFT JOIN spot s ON s.symbol = p.underlying
           LEFT JOIN greeks g ON g.contract = p.instrument;
