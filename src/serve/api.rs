//! The JSON endpoints: `/api/status`, `/api/positions`, `/api/day/{date}`. While a job
//! has the store they answer 503 with Retry-After and the reason.

use super::http::Reply;
use super::pages::{self, RunLine, RETRY_AFTER_SECS};
use super::{State, Unavailable};
use crate::report::{PositionRow, ReportData};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

fn unavailable(u: &Unavailable) -> Reply {
    match u {
        Unavailable::Busy(why) => Reply::json(
            503,
            &json!({ "error": why, "retry_after_seconds": RETRY_AFTER_SECS }),
        )
        .with("Retry-After", RETRY_AFTER_SECS.to_string()),
        Unavailable::Failed(_) => Reply::json_error(500, u.reason()),
    }
}

fn taken(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn positions_json(rows: &[PositionRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|p| {
                json!({
                    "strategy": p.strategy,
                    "instrument": p.instrument,
                    "underlying": p.underlying,
                    "kind": p.kind,
                    "quantity": p.quantity,
                    "multiplier": p.multiplier,
                    "entry": p.entry,
                    "opened": p.opened.to_string(),
                    "mark": p.mark,
                    "pnl": p.pnl,
                    "delta_shares": p.delta,
                    "theta_usd_per_day": p.theta,
                    "vega_usd_per_vol_point": p.vega,
                })
            })
            .collect(),
    )
}

fn runs_json(runs: &[RunLine]) -> Value {
    Value::Array(
        runs.iter()
            .map(|r| {
                json!({
                    "run_id": r.run_id,
                    "job": r.job,
                    "slot": r.slot,
                    "status": r.status,
                    "trigger": r.trigger,
                    "started_at": r.started_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "finished_at": r.finished_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "rows_written": r.rows,
                    "message": r.message,
                })
            })
            .collect(),
    )
}

fn portfolio_json(d: &ReportData) -> Value {
    match &d.portfolio {
        Some(p) => json!({
            "equity": p.equity,
            "cash": p.cash,
            "market_value": p.market_value,
            "open_positions": p.open_positions,
            "stale_marks": p.stale_marks,
            "marks_as_of": p.quote_time.format("%Y-%m-%dT%H:%M:%S").to_string(),
            "pnl_today": p.day_pnl,
            "return_today": p.day_return,
            "total_return": p.total_return,
            "start_date": p.start_date.to_string(),
            "start_equity": p.start_equity,
            "spy_return": p.spy_return,
            "note": p.note,
        }),
        None => Value::Null,
    }
}

fn strategy_pnl_json(d: &ReportData) -> Value {
    Value::Array(
        d.strategy_pnl
            .iter()
            .filter_map(|(s, c)| {
                let last = c.last()?;
                let today = (last.date == d.as_of).then(|| {
                    last.value
                        - if c.len() >= 2 {
                            c[c.len() - 2].value
                        } else {
                            0.0
                        }
                });
                Some(json!({ "strategy": s, "pnl": last.value, "pnl_today": today }))
            })
            .collect(),
    )
}

fn day_json(d: &ReportData, runs: &[RunLine]) -> Value {
    json!({
        "date": d.as_of.to_string(),
        "portfolio": portfolio_json(d),
        "strategy_pnl": strategy_pnl_json(d),
        "positions": positions_json(&d.positions),
        "trades": d.fills_today.iter().map(|f| json!({
            "strategy": f.strategy,
            "order_ref": f.order_ref,
            "instrument": f.instrument,
            "quantity": f.quantity,
            "multiplier": f.multiplier,
            "price": f.price,
            "commission": f.commission,
            "cash_kind": f.cash_kind,
            "cash": f.cash,
        })).collect::<Vec<_>>(),
        "signals": d.signals.iter().map(|s| json!({
            "strategy": s.strategy,
            "underlying": s.underlying,
            "action": s.action,
            "detail": s.detail,
        })).collect::<Vec<_>>(),
        "refusals": d.refusals.iter().map(|r| json!({
            "strategy": r.strategy,
            "underlying": r.underlying,
            "order_ref": r.order_ref,
            "rule": r.rule,
            "reason": r.reason,
        })).collect::<Vec<_>>(),
        "jobs": runs_json(runs),
    })
}

/// `/api/status`: the latest session's book, its jobs, the kill switch, the next firings.
pub(super) fn status(state: &mut State) -> Reply {
    let now = state.now_ny();
    let t = match state.load_today() {
        Ok(t) => t,
        Err(u) => return unavailable(&u),
    };
    let firings: Vec<Value> = crate::schedule::plan(&state.entries, now, 14)
        .iter()
        .take(8)
        .map(|f| {
            let e = &state.entries[f.entry];
            json!({
                "at": f.at.to_rfc3339(),
                "what": e.target.to_string(),
                "schedule": e.spec.to_string(),
            })
        })
        .collect();
    let in_session = matches!(
        crate::calendar::session(now.date_naive()),
        Ok(Some(s)) if now >= s.open_at() && now < s.close_at()
    );
    let body = json!({
        "data_taken_at": taken(t.taken_at),
        "now_new_york": now.to_rfc3339(),
        "market_open": in_session,
        "session": t.session.map(|s| s.to_string()),
        "kill_switch": state.kill_switch_on(),
        "warnings": state.warnings(&t, now),
        "portfolio": t.data.as_ref().map(portfolio_json).unwrap_or(Value::Null),
        "strategy_pnl": t.data.as_ref().map(strategy_pnl_json).unwrap_or(Value::Array(Vec::new())),
        "jobs": runs_json(&t.runs),
        "volatility": t.vol.iter().map(|v| json!({
            "symbol": v.symbol,
            "at": v.at.to_string(),
            "spot": v.spot,
            "atm_iv_30d": v.atm_iv_30d,
            "iv_rank": v.iv_rank,
            "hv_10": v.hv_10,
            "expected_move_1d": v.expected_move,
            "range_today": v.range,
            "range_over_move": v.range_over_move(),
        })).collect::<Vec<_>>(),
        "next_firings": firings,
        "version": crate::VERSION,
    });
    state.last_today = Some(t);
    Reply::json(200, &body)
}

/// `/api/positions`: the open positions of the latest session, with marks and greeks.
pub(super) fn positions(state: &mut State) -> Reply {
    let t = match state.load_today() {
        Ok(t) => t,
        Err(u) => return unavailable(&u),
    };
    let body = json!({
        "data_taken_at": taken(t.taken_at),
        "session": t.session.map(|s| s.to_string()),
        "positions": positions_json(t.data.as_ref().map(|d| d.positions.as_slice()).unwrap_or(&[])),
    });
    state.last_today = Some(t);
    Reply::json(200, &body)
}

/// `/api/day/{date}`: one session's book, trades, signals, refusals and jobs.
pub(super) fn day(state: &mut State, date: &str) -> Reply {
    let d = match pages::parse_session(date) {
        Ok(d) => d,
        Err((status, why)) => return Reply::json_error(status, &why),
    };
    let rfr = state.risk_free_rate;
    let read = state.read(|store| {
        let runs = pages::runs_of(store, d)?;
        let data = pages::report_of(store, d, rfr)?;
        Ok((data, runs))
    });
    match read {
        Ok(((data, runs), t)) => {
            if runs.is_empty() && data.portfolio.is_none() {
                return Reply::json_error(
                    404,
                    &format!("{d} is a session, but the store has no run for it"),
                );
            }
            let mut body = day_json(&data, &runs);
            body["data_taken_at"] = Value::String(taken(t));
            Reply::json(200, &body)
        }
        Err(u) => unavailable(&u),
    }
}
