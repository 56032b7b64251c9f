//! Money as an exact number of minor units (cents), never a float.
//!
//! In Avro it is a `decimal` of precision 12 and scale 2 carried in `bytes`: the unscaled value
//! as a big-endian two's-complement integer in the fewest bytes that hold it.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Mul, Sub};
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The largest magnitude a `decimal(12, 2)` holds, in minor units.
pub const MAX_MINOR_UNITS: i64 = 999_999_999_999;

/// An amount of money in minor units (1/100 of the currency unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// An amount of `cents` minor units.
    pub const fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    /// The amount in minor units.
    pub const fn cents(self) -> i64 {
        self.0
    }

    /// This amount times `rate`, rounded half away from zero to the cent.
    pub fn scale(self, rate: f64) -> Money {
        Money((self.0 as f64 * rate).round() as i64)
    }

    /// The amount in another currency at `rate` (units of it per unit of this one), to the
    /// cent; the same amount at rate 1.
    pub fn convert(self, rate: f64) -> Money {
        if rate == 1.0 { self } else { self.scale(rate) }
    }

    /// The unscaled value as Avro's decimal bytes: minimal big-endian two's complement, as the
    /// bytes `[start..]` of the returned array (no allocation).
    pub fn decimal_bytes(self) -> ([u8; 8], usize) {
        let bytes = self.0.to_be_bytes();
        let mut start = 0;
        while start < bytes.len() - 1 {
            let (b, next) = (bytes[start], bytes[start + 1]);
            let redundant = (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
            if !redundant {
                break;
            }
            start += 1;
        }
        (bytes, start)
    }

    /// The unscaled value as Avro's decimal bytes, in a vector.
    pub fn to_decimal_bytes(self) -> Vec<u8> {
        let (bytes, start) = self.decimal_bytes();
        bytes[start..].to_vec()
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, other: Money) {
        *self = *self + other;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl Mul<i64> for Money {
    type Output = Money;
    fn mul(self, rhs: i64) -> Money {
        Money(self.0 * rhs)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Why a text is not an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an amount of money (expected digits with at most two decimals, like 49.90)")]
pub struct ParseMoneyError(String);

impl FromStr for Money {
    type Err = ParseMoneyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ParseMoneyError(text.to_owned());
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (units, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if units.is_empty() || !all_digits(units) || !all_digits(fraction) || fraction.len() > 2 {
            return Err(err());
        }
        let units: i64 = units.parse().map_err(|_| err())?;
        let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| err())?;
        let cents = units
            .checked_mul(100)
            .and_then(|c| c.checked_add(fraction))
            .filter(|c| *c <= MAX_MINOR_UNITS)
            .ok_or_else(err)?;
        Ok(Money(if negative { -cents } else { cents }))
    }
}

/// Text like `"12.50"` in human-readable formats (JSON), Avro decimal bytes otherwise.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.to_decimal_bytes())
        }
    }
}

/// Serde of an amount as its minor units (`#[serde(with)]`), for the simulator's own state.
pub mod cents {
    use super::Money;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Money, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(m.cents())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        i64::deserialize(d).map(Money::from_cents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_bytes_are_minimal_twos_complement() {
        assert_eq!(Money::from_cents(0).to_decimal_bytes(), vec![0x00]);
        assert_eq!(Money::from_cents(127).to_decimal_bytes(), vec![0x7f]);
        assert_eq!(Money::from_cents(128).to_decimal_bytes(), vec![0x00, 0x80]);
        assert_eq!(Money::from_cents(1999).to_decimal_bytes(), vec![0x07, 0xcf]);
        assert_eq!(Money::from_cents(-1).to_decimal_bytes(), vec![0xff]);
        assert_eq!(Money::from_cents(-129).to_decimal_bytes(), vec![0xff, 0x7f]);
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!("49.9".parse::<Money>().unwrap(), Money::from_cents(4990));
        assert_eq!("5".parse::<Money>().unwrap(), Money::from_cents(500));
        assert_eq!(Money::from_cents(-5).to_string(), "-0.05");
        for bad in ["", "1.234", "abc", "1e3", ".5", "1.-2", "99999999999999"] {
            assert!(bad.parse::<Money>().is_err(), "{bad} accepted");
        }
    }

    proptest! {
        #[test]
        fn decimal_bytes_round_trip(cents in -MAX_MINOR_UNITS..=MAX_MINOR_UNITS) {
            let bytes = Money::from_cents(cents).to_decimal_bytes();
            prop_assert!(bytes.len() <= 6, "decimal(12,2) fits in 6 bytes");
            let mut wide = [if bytes[0] & 0x80 != 0 { 0xff } else { 0 }; 8];
            wide[8 - bytes.len()..].copy_from_slice(&bytes);
            prop_assert_eq!(i64::from_be_bytes(wide), cents);
        }

        #[test]
        fn text_round_trip(cents in -MAX_MINOR_UNITS..=MAX_MINOR_UNITS) {
            let m = Money::from_cents(cents);
            prop_assert_eq!(m.to_string().parse::<Money>().unwrap(), m);
        }
    }
}
