//! Identifiers, checked where they are made (NautilusTrader's `new_checked`): a ticker
//! symbol, the OCC option symbol, and the client order id every order carries.

use super::{ModelError, OptionRight, Price};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use std::fmt;

/// A ticker: 1 to 10 characters, upper-case letters, digits, `.`, `/` or `-`
/// (`SPY`, `BRK.B`, `MESZ4`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol(String);

impl Symbol {
    pub fn new_checked(s: &str) -> Result<Symbol, ModelError> {
        let ok = !s.is_empty()
            && s.len() <= 10
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "./-^".contains(c));
        if !ok {
            return Err(ModelError::BadSymbol(s.to_string()));
        }
        Ok(Symbol(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The OCC option symbol: root padded to 6, YYMMDD, C/P, strike × 1000 in 8 digits,
/// e.g. `SPY   250321C00580000` (21 characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OccSymbol {
    pub root: String,
    pub expiry: NaiveDate,
    pub right: OptionRight,
    pub strike: Price,
}

impl OccSymbol {
    pub fn new_checked(
        root: &str,
        expiry: NaiveDate,
        right: OptionRight,
        strike: Price,
    ) -> Result<OccSymbol, ModelError> {
        let bad = |reason: &str| ModelError::BadOcc {
            symbol: format!("{root} {expiry} {} {strike}", right.code()),
            reason: reason.to_string(),
        };
        if root.is_empty()
            || root.len() > 6
            || !root
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(bad("the root must be 1 to 6 upper-case letters or digits"));
        }
        if !strike.is_positive() {
            return Err(bad("the strike must be positive"));
        }
        if strike.raw() % (Price::SCALE / 1000) != 0 || strike.raw() / 10 > 99_999_999 {
            return Err(bad(
                "the strike must be a multiple of $0.001 below $100,000",
            ));
        }
        Ok(OccSymbol {
            root: root.to_string(),
            expiry,
            right,
            strike,
        })
    }

    /// Parse `SPY   250321C00580000` (the padded 21-character form) or the compact form
    /// without padding (`SPY250321C00580000`, as some vendors write it).
    pub fn parse(s: &str) -> Result<OccSymbol, ModelError> {
        let bad = |reason: &str| ModelError::BadOcc {
            symbol: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim_end();
        if t.len() < 16 || !t.is_ascii() {
            return Err(bad("expected ROOT + YYMMDD + C/P + 8-digit strike"));
        }
        let (head, tail) = t.split_at(t.len() - 15);
        let root = head.trim_end();
        let date = &tail[..6];
        let right = &tail[6..7];
        let strike = &tail[7..];
        if !date.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad(&format!("'{date}' is not a YYMMDD date")));
        }
        let expiry = NaiveDate::parse_from_str(&format!("20{date}"), "%Y%m%d")
            .map_err(|_| bad(&format!("'{date}' is not a date")))?;
        let right: OptionRight = right
            .parse()
            .map_err(|_| bad(&format!("unknown right code '{right}' (expected C or P)")))?;
        if !strike.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad(&format!("'{strike}' is not an 8-digit strike")));
        }
        let milli: i64 = strike
            .parse()
            .map_err(|_| bad(&format!("'{strike}' is not an 8-digit strike")))?;
        Self::new_checked(
            root,
            expiry,
            right,
            Price::from_raw(milli * (Price::SCALE / 1000)),
        )
        .map_err(|e| match e {
            ModelError::BadOcc { reason, .. } => bad(&reason),
            e => e,
        })
    }
}

impl fmt::Display for OccSymbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::occ_symbol(
            &self.root,
            self.expiry,
            self.right,
            self.strike,
        ))
    }
}

/// Why an order was placed: the prefix of its id and the `intent` of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Intent {
    /// A strategy's new position.
    Entry,
    /// A strategy's exit rule (profit take, stop, holding period).
    Exit,
    /// Expiry settlement, assignment or exercise.
    Expire,
    /// `optdesk flatten`.
    Flatten,
}

impl Intent {
    pub fn code(self) -> &'static str {
        match self {
            Intent::Entry => "entry",
            Intent::Exit => "exit",
            Intent::Expire => "expire",
            Intent::Flatten => "flatten",
        }
    }
    pub fn from_code(code: &str) -> Result<Intent, ModelError> {
        match code {
            "entry" => Ok(Intent::Entry),
            "exit" => Ok(Intent::Exit),
            "expire" => Ok(Intent::Expire),
            "flatten" => Ok(Intent::Flatten),
            _ => Err(ModelError::BadField {
                field: "intent",
                value: code.to_string(),
            }),
        }
    }
}

/// An order's identity, made only from (intent, strategy, session, slot time,
/// sequence), so two slots of one day, or an entry and an exit, can never share one:
/// `call_premium:2024-06-04T0935:0` for an entry, `exit:dispersion:2024-03-12T0935:0`
/// for the others. It is the `order_ref` of `orders`, `fills` and `cash_ledger`, and
/// the order reference a broker carries (IBKR's orderRef), so a re-run finds its
/// orders at the broker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientOrderId {
    pub intent: Intent,
    pub strategy: String,
    pub at: NaiveDateTime,
    pub sequence: u32,
}

impl ClientOrderId {
    pub fn new(
        intent: Intent,
        strategy: &str,
        as_of: NaiveDate,
        slot: NaiveTime,
        sequence: u32,
    ) -> Result<ClientOrderId, ModelError> {
        if strategy.is_empty()
            || strategy.len() > 40
            || !strategy
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ModelError::BadOrderId {
                id: strategy.to_string(),
                reason: "the strategy must be 1 to 40 of a-z, 0-9 and _".into(),
            });
        }
        Ok(ClientOrderId {
            intent,
            strategy: strategy.to_string(),
            at: as_of.and_time(slot),
            sequence,
        })
    }

    pub fn as_of(&self) -> NaiveDate {
        self.at.date()
    }

    pub fn parse(s: &str) -> Result<ClientOrderId, ModelError> {
        let bad = |reason: &str| ModelError::BadOrderId {
            id: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (intent, rest) = match parts.as_slice() {
            [st, at, seq] => (Intent::Entry, [*st, *at, *seq]),
            [i, st, at, seq] => (
                Intent::from_code(i).map_err(|_| bad("unknown intent prefix"))?,
                [*st, *at, *seq],
            ),
            _ => return Err(bad("expected [intent:]strategy:YYYY-MM-DDTHHMM:sequence")),
        };
        if intent == Intent::Entry && parts.len() == 4 {
            return Err(bad("an entry carries no intent prefix"));
        }
        let at = NaiveDateTime::parse_from_str(rest[1], "%Y-%m-%dT%H%M")
            .map_err(|_| bad("the time must be YYYY-MM-DDTHHMM"))?;
        let sequence: u32 = rest[2].parse().map_err(|_| bad("bad sequence"))?;
        Self::new(intent, rest[0], at.date(), at.time(), sequence)
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.intent != Intent::Entry {
            write!(f, "{}:", self.intent.code())?;
        }
        write!(
            f,
            "{}:{}:{}",
            self.strategy,
            self.at.format("%Y-%m-%dT%H%M"),
            self.sequence
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn occ_symbols_round_trip_and_bad_ones_say_why() {
        let o = OccSymbol::parse("SPY   250321C00580000").unwrap();
        assert_eq!(o.root, "SPY");
        assert_eq!(o.expiry, d("2025-03-21"));
        assert_eq!(o.right, OptionRight::Call);
        assert_eq!(o.strike, Price::from_cents(58_000));
        assert_eq!(o.to_string(), "SPY   250321C00580000");
        let w = OccSymbol::parse("SPXW250321P05872500").unwrap();
        assert_eq!(
            (w.root.as_str(), w.strike),
            ("SPXW", Price::from_f64(5872.5))
        );
        for (bad, why) in [
            ("SPY   250321X00580000", "unknown right code 'X'"),
            ("SPY   251321C00580000", "not a date"),
            ("SPY   250321C0058000A", "8-digit strike"),
            ("SPY   250321C00000000", "positive"),
            ("SPY", "expected ROOT"),
            ("spy   250321C00580000", "upper-case"),
        ] {
            let e = OccSymbol::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad.trim()), "{bad}: {e}");
        }
    }

    #[test]
    fn client_order_ids_carry_the_slot_and_never_collide_across_slots() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        let a =
            ClientOrderId::new(Intent::Entry, "dispersion", d("2024-03-05"), t(9, 35), 0).unwrap();
        let b =
            ClientOrderId::new(Intent::Entry, "dispersion", d("2024-03-05"), t(12, 0), 0).unwrap();
        assert_ne!(a.to_string(), b.to_string());
        assert_eq!(a.to_string(), "dispersion:2024-03-05T0935:0");
        let x =
            ClientOrderId::new(Intent::Exit, "dispersion", d("2024-03-05"), t(9, 35), 0).unwrap();
        assert_eq!(x.to_string(), "exit:dispersion:2024-03-05T0935:0");
        assert_ne!(a.to_string(), x.to_string());
        for id in [&a, &b, &x] {
            assert_eq!(&ClientOrderId::parse(&id.to_string()).unwrap(), id);
        }
        assert!(
            ClientOrderId::new(Intent::Entry, "Bad Name", d("2024-03-05"), t(9, 35), 0).is_err()
        );
        assert!(ClientOrderId::parse("dispersion:2024-03-05:0").is_err());
    }

    #[test]
    fn symbols_are_checked() {
        assert!(Symbol::new_checked("BRK.B").is_ok());
        assert!(Symbol::new_checked("").is_err());
        assert!(Symbol::new_checked("spy").is_err());
    }
}
