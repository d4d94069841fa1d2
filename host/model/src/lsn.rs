//! Log sequence numbers: integers on the wire, `X/Y` only for humans and SQL.
//!
//! Patroni exchanges every LSN (member `xlog_location`, `status.optime`, slot
//! positions, history switch points) as an unsigned byte offset in a JSON integer,
//! never as Postgres' `X/Y` text. [`Lsn`] converts between the two so that the `X/Y`
//! form never reaches a DCS value.

use std::fmt;
use std::str::FromStr;

/// A WAL position in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// A string that is not `X/Y` with two hexadecimal halves of at most 32 bits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an LSN of the form X/Y")]
pub struct ParseLsnError(String);

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_owned());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 {
                return Err(err());
            }
            u32::from_str_radix(h, 16).map_err(|_| err())
        };
        Ok(Self((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

impl fmt::Display for Lsn {
    /// Postgres' text form, upper-case hex: `0/3000140`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Self(v)
    }
}

impl From<Lsn> for u64 {
    fn from(l: Lsn) -> Self {
        l.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_integer_forms() {
        let cases = [
            ("0/3000140", 50_331_968u64),
            ("0/0", 0),
            ("1/0", 1 << 32),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
            ("16/B374D848", 0x16_B374_D848),
        ];
        for (text, int) in cases {
            assert_eq!(text.parse::<Lsn>(), Ok(Lsn(int)), "{text}");
            assert_eq!(Lsn(int).to_string(), text);
        }
        assert_eq!("16/b374d848".parse::<Lsn>(), Ok(Lsn(0x16_B374_D848)));
        for bad in ["", "0", "/0", "0/", "x/0", "100000000/0", "0/0/0", "-1/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }
}
