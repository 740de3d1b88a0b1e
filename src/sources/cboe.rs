//! The `cboe` source: Cboe's delayed-quotes JSON, one payload per underlying with every
//! listed expiry (`{base_url}/api/global/delayed_quotes/options/<SYM>.json`; indices
//! take an underscore, `_SPX`). Expiry, strike and right come from each option's
//! symbol; the vendor's IV is kept as `source_iv`. The payload's own timestamp is
//! reported in the run's summary.
//!
//! Every request has a timeout; 429, 5xx, 403 and dropped connections are retried with
//! back-off (a 429's Retry-After honoured, up to the configured bound); symbols are
//! fetched one at a time with a pause between them; and nothing is returned unless
//! every symbol's payload arrived and parsed, so `fetch_chains` writes a whole snapshot
//! or nothing. Daily bars, which this endpoint does not give, come from the archive
//! `optdesk import` filled (`[cboe] history = "archive"`), from Yahoo's chart endpoint
//! (`"yahoo"`) or nowhere (`"none"`); the run's summary says which.

use super::{
    each_symbol, MarketData, RiskFreeRate, Snapshot, SourceError, SourceReject, UnderlyingQuote,
};
use crate::config::CboeConfig;
use crate::model::{DailyBar, OptionQuote, OptionRight, Price};
use crate::net::{HttpClient, NetError};
use chrono::{NaiveDate, NaiveDateTime};
use std::time::Duration;

const NAME: &str = "cboe";

pub struct Cboe {
    client: HttpClient,
    config: CboeConfig,
    rate: RiskFreeRate,
    /// Where daily bars come from.
    history: Option<Box<dyn MarketData>>,
}

/// One option symbol's terms: `SPXW241220C05900000` → (SPXW, 2024-12-20, call, 5900).
pub fn parse_option_symbol(s: &str) -> Option<(String, NaiveDate, OptionRight, Price)> {
    let s = s.trim();
    let i = s.find(|c: char| c.is_ascii_digit())?;
    let (root, rest) = s.split_at(i);
    // OCC's padded form (`SPY   240322C…`) has spaces after the root; nothing else.
    let root = root.trim_end_matches(' ');
    if root.is_empty() || root.len() > 6 || !root.chars().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    if rest.len() != 15 || !rest.is_ascii() || !rest[..6].chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let expiry = NaiveDate::parse_from_str(&format!("20{}", &rest[..6]), "%Y%m%d").ok()?;
    let right = match &rest[6..7] {
        "C" => OptionRight::Call,
        "P" => OptionRight::Put,
        _ => return None,
    };
    let digits = &rest[7..];
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let milli: i64 = digits.parse().ok()?;
    if milli <= 0 {
        return None;
    }
    let strike = Price::try_from_f64(milli as f64 / 1000.0).ok()?;
    Some((root.to_string(), expiry, right, strike))
}

/// Why an option symbol [`parse_option_symbol`] refused does not read: the rule and the
/// reason, for `quote_rejects`. An OCC root with a digit (`SPY1`, `AAPL7`) is an
/// adjusted, non-standard contract (after a special dividend or a merger), not noise.
pub fn unreadable_symbol(s: &str) -> (&'static str, String) {
    let s: String = s.trim().chars().take(40).collect();
    let tail_reads = s.len() > 15
        && s.is_char_boundary(s.len() - 15)
        && parse_option_symbol(&format!("X{}", &s[s.len() - 15..])).is_some();
    let root = if tail_reads { &s[..s.len() - 15] } else { "" };
    if tail_reads
        && root.starts_with(|c: char| c.is_ascii_uppercase())
        && root.ends_with(|c: char| c.is_ascii_digit())
        && root
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        (
            "non_standard",
            format!("'{s}': root '{root}' has a digit, an adjusted contract"),
        )
    } else {
        (
            "unparseable",
            format!("option symbol '{s}' does not read as ROOT YYMMDD C/P strike"),
        )
    }
}

/// A payload's underlying price, timestamp and options, or what is wrong with it.
#[derive(Debug)]
pub struct Payload {
    pub timestamp: Option<NaiveDateTime>,
    pub price: f64,
    pub options: Vec<PayloadOption>,
}

#[derive(Debug)]
pub struct PayloadOption {
    pub symbol: String,
    pub bid: f64,
    pub ask: f64,
    pub bid_size: f64,
    pub ask_size: f64,
    pub iv: f64,
    pub volume: f64,
    pub open_interest: f64,
}

/// Parse one delayed-quotes payload. `what` names it in errors.
pub fn parse_payload(body: &[u8], what: &str) -> Result<Payload, SourceError> {
    let bad = |field: &str, reason: String| SourceError::BadData {
        file_or_source: what.to_string(),
        line: None,
        field: field.to_string(),
        reason,
    };
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        bad(
            "body",
            format!("not the delayed-quotes JSON (cut short or not JSON): {e}"),
        )
    })?;
    let data = v
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| bad("data", "missing".into()))?;
    let price = data
        .get("current_price")
        .and_then(|p| p.as_f64())
        .filter(|p| p.is_finite() && *p > 0.0)
        .ok_or_else(|| {
            bad(
                "data.current_price",
                "missing or not a positive number".into(),
            )
        })?;
    let timestamp = v
        .get("timestamp")
        .and_then(|t| t.as_str())
        .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok());
    let list = match data.get("options") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(_) => return Err(bad("data.options", "not a list".into())),
    };
    let num = |o: &serde_json::Value, k: &str| {
        o.get(k)
            .and_then(|x| x.as_f64())
            .filter(|x| x.is_finite())
            .unwrap_or(0.0)
    };
    let mut options = Vec::with_capacity(list.len());
    for (i, o) in list.iter().enumerate() {
        let symbol = o
            .get("option")
            .and_then(|s| s.as_str())
            .ok_or_else(|| bad(&format!("data.options[{i}].option"), "missing".into()))?;
        options.push(PayloadOption {
            symbol: symbol.to_string(),
            bid: num(o, "bid"),
            ask: num(o, "ask"),
            bid_size: num(o, "bid_size"),
            ask_size: num(o, "ask_size"),
            iv: num(o, "iv"),
            volume: num(o, "volume"),
            open_interest: num(o, "open_interest"),
        });
    }
    Ok(Payload {
        timestamp,
        price,
        options,
    })
}

impl Cboe {
    pub fn new(
        config: &CboeConfig,
        rate: RiskFreeRate,
        history: Option<Box<dyn MarketData>>,
    ) -> Result<Cboe, SourceError> {
        let client = super::web_client(
            config.timeout_secs,
            config.attempts,
            config.backoff_ms,
            config.max_backoff_secs,
        )?;
        Ok(Cboe {
            client,
            config: config.clone(),
            rate,
            history,
        })
    }

    fn url(&self, symbol: &str) -> String {
        // Cboe serves indices with an underscore.
        let sym = if super::INDEX_SYMBOLS.contains(&symbol) {
            format!("_{symbol}")
        } else {
            symbol.to_string()
        };
        format!(
            "{}/api/global/delayed_quotes/options/{sym}.json",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// GET one payload: retried on 429, 5xx, 403 and dropped connections (the policy).
    fn fetch(&self, symbol: &str) -> Result<Vec<u8>, SourceError> {
        let url = self.url(symbol);
        let ex = self.client.send(|c| {
            c.get(&url)
                .header(reqwest::header::USER_AGENT, &self.config.user_agent)
        });
        match ex.result {
            Ok(r) => Ok(r.body),
            Err(NetError::Http { status: 404, .. }) => Err(SourceError::UnknownSymbol {
                source_name: NAME,
                symbol: symbol.to_string(),
            }),
            Err(e) => Err(super::final_error(
                &self.client,
                e,
                ex.attempts,
                NAME,
                symbol,
            )),
        }
    }
}

impl MarketData for Cboe {
    fn name(&self) -> &'static str {
        NAME
    }

    fn default_symbols(&self) -> Vec<String> {
        self.config.symbols.clone()
    }

    fn bars_source(&self) -> &'static str {
        self.history.as_ref().map_or(NAME, |h| h.name())
    }

    fn snapshot(
        &self,
        quote_time: NaiveDateTime,
        symbols: &[String],
        max_expiry_days: u32,
    ) -> Result<Snapshot, SourceError> {
        let as_of = quote_time.date();
        let last_expiry = as_of + chrono::Duration::days(max_expiry_days as i64);
        let (rate, rate_from) = self.rate.on(NAME, as_of)?;
        let mut underlyings = Vec::new();
        let mut quotes = Vec::new();
        let mut notes = Vec::new();
        let mut rejects = Vec::new();
        let mut stamps = Vec::new();
        let payloads = each_symbol(symbols, self.config.concurrency, |sym, first| {
            if !first && self.config.pause_ms > 0 {
                std::thread::sleep(Duration::from_millis(self.config.pause_ms));
            }
            let p = parse_payload(&self.fetch(sym)?, &format!("cboe {sym}"))?;
            super::refuse_placeholder_chain(
                NAME,
                sym,
                as_of,
                p.options.iter().map(|o| (o.bid, o.ask)),
                "Cboe's delayed quotes before the open",
            )?;
            Ok(p)
        })?;
        for (sym, p) in symbols.iter().zip(payloads) {
            if let Some(t) = p.timestamp {
                stamps.push(t);
            }
            let price = Price::try_from_f64(p.price).map_err(|e| SourceError::BadData {
                file_or_source: format!("cboe {sym}"),
                line: None,
                field: "data.current_price".into(),
                reason: e.to_string(),
            })?;
            underlyings.push(UnderlyingQuote {
                symbol: sym.clone(),
                price,
                rate,
                div_yield: self.config.div_yield,
            });
            if p.options.is_empty() {
                notes.push(format!("{sym}: no options listed"));
            }
            let mut unreadable = 0;
            for o in &p.options {
                let Some((root, expiry, right, strike)) = parse_option_symbol(&o.symbol) else {
                    let (rule, reason) = unreadable_symbol(&o.symbol);
                    unreadable += usize::from(rule == "unparseable");
                    rejects.push(SourceReject {
                        underlying: sym.clone(),
                        contract: o.symbol.chars().take(40).collect(),
                        rule,
                        reason,
                        raw: format!(
                            "option={} bid={} ask={} iv={}",
                            o.symbol.chars().take(40).collect::<String>(),
                            o.bid,
                            o.ask,
                            o.iv
                        ),
                    });
                    continue;
                };
                if expiry > last_expiry {
                    continue;
                }
                quotes.push(OptionQuote {
                    underlying: sym.clone(),
                    settlement: crate::model::instrument::listed_terms(&root).1,
                    root,
                    expiry,
                    strike,
                    right,
                    bid: super::web_price(o.bid),
                    ask: super::web_price(o.ask),
                    bid_size: o.bid_size.clamp(0.0, i32::MAX as f64) as i32,
                    ask_size: o.ask_size.clamp(0.0, i32::MAX as f64) as i32,
                    volume: o.volume.max(0.0) as i64,
                    open_interest: o.open_interest.max(0.0) as i64,
                    underlying_price: price,
                    source_iv: (o.iv > 0.0 && o.iv < 20.0).then_some(o.iv),
                });
            }
            if unreadable > 0 {
                notes.push(format!(
                    "{sym}: {unreadable} option symbols not understood, left out"
                ));
            }
        }
        if let Some(n) = super::times_note("Cboe payload", &stamps) {
            notes.insert(0, n);
        }
        notes.push(match &self.history {
            Some(h) => format!("daily bars from {}", h.name()),
            None => "no daily bars ([cboe] history = \"none\")".into(),
        });
        notes.push(format!("risk-free rate {:.4}% ({rate_from})", rate * 100.0));
        Ok(Snapshot {
            as_of,
            quote_time,
            underlyings,
            quotes,
            notes,
            rejects,
        })
    }

    fn daily_bars(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Vec<DailyBar>, SourceError> {
        match &self.history {
            Some(h) => h.daily_bars(symbols, dates),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_symbols_give_their_terms() {
        let (root, e, r, k) = parse_option_symbol("SPXW241220C05900000").unwrap();
        assert_eq!(
            (root.as_str(), e.to_string(), r, k.to_f64()),
            ("SPXW", "2024-12-20".into(), OptionRight::Call, 5900.0)
        );
        let (root, _, r, k) = parse_option_symbol("CLX260821P00055500").unwrap();
        assert_eq!(
            (root.as_str(), r, k.to_f64()),
            ("CLX", OptionRight::Put, 55.5)
        );
        for bad in [
            "",
            "SPX",
            "SPX241320C05900000",
            "SPX241220X05900000",
            "SPX241220C0590000",
            "spx241220C05900000",
            "SPX241220C00000000",
            "1241220C05900000",
        ] {
            assert!(parse_option_symbol(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_adjusted_root_is_non_standard_and_noise_is_unparseable() {
        assert_eq!(unreadable_symbol("SPY1241220C00590000").0, "non_standard");
        assert_eq!(unreadable_symbol("AAPL7250117P00150000").0, "non_standard");
        for noise in [
            "",
            "SPY",
            "SPY 24X220C00590000",
            "1241220C05900000",
            "ÄÖÜ241220C0590000",
        ] {
            let (rule, reason) = unreadable_symbol(noise);
            assert_eq!(rule, "unparseable", "{noise}");
            assert!(reason.contains("does not read"), "{reason}");
        }
    }

    #[test]
    fn a_payload_parses_and_a_cut_one_is_refused() {
        let body = br#"{"timestamp": "2024-11-21 10:05:00", "data": {"current_price": 5917.11, "options": [
            {"option": "SPX241220C05900000", "bid": 120.5, "ask": 121.5, "bid_size": 10.0, "ask_size": 12.0, "iv": 0.1337, "volume": 5.0, "open_interest": 100.0}]}, "symbol": "_SPX"}"#;
        let p = parse_payload(body, "cboe SPX").unwrap();
        assert_eq!(p.price, 5917.11);
        assert_eq!(p.options.len(), 1);
        assert_eq!(p.timestamp.unwrap().to_string(), "2024-11-21 10:05:00");
        let e = parse_payload(&body[..body.len() / 2], "cboe SPX")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cboe SPX") && e.contains("cut short"), "{e}");
        let e = parse_payload(br#"{"data": {"options": []}}"#, "cboe X")
            .unwrap_err()
            .to_string();
        assert!(e.contains("current_price"), "{e}");
    }
}
