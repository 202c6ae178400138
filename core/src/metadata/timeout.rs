//! `grpc-timeout`: `TimeoutValue TimeoutUnit`, at most 8 ASCII digits, units H M S m u n.

use std::time::Duration;

/// Encodes a timeout with the finest unit that fits in 8 digits (rounding up).
pub fn encode_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    if nanos <= MAX {
        return format!("{nanos}n");
    }
    let units: [(u128, char); 5] =
        [(1_000, 'u'), (1_000_000, 'm'), (1_000_000_000, 'S'), (60_000_000_000, 'M'), (3_600_000_000_000, 'H')];
    for (div, unit) in units {
        let v = nanos.div_ceil(div);
        if v <= MAX {
            return format!("{v}{unit}");
        }
    }
    format!("{MAX}H")
}

/// Parses a `grpc-timeout` value. Like grpc-go, anything malformed (empty,
/// more than 8 digits, a non-digit, an unknown unit) is an error, which the
/// server reports as INTERNAL.
pub fn decode_timeout(s: &str) -> Result<Duration, String> {
    if s.len() < 2 {
        return Err(format!("timeout string is too short: {s:?}"));
    }
    if s.len() > 9 {
        return Err(format!("timeout string is too long: {s:?}"));
    }
    let (digits, unit) = s.split_at(s.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("malformed timeout value: {s:?}"));
    }
    let v: u64 = digits.parse().map_err(|_| format!("malformed timeout value: {s:?}"))?;
    let d = match unit {
        "H" => Duration::from_secs(v.saturating_mul(3600)),
        "M" => Duration::from_secs(v.saturating_mul(60)),
        "S" => Duration::from_secs(v),
        "m" => Duration::from_millis(v),
        "u" => Duration::from_micros(v),
        "n" => Duration::from_nanos(v),
        _ => return Err(format!("timeout unit is not recognized: {s:?}")),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_uses_eight_digits() {
        assert_eq!(encode_timeout(Duration::from_nanos(5)), "5n");
        assert_eq!(encode_timeout(Duration::from_millis(100)), "100000u");
        assert_eq!(encode_timeout(Duration::from_secs(1)), "1000000u");
        assert_eq!(encode_timeout(Duration::from_secs(3600 * 24 * 365)), "31536000S");
        assert_eq!(encode_timeout(Duration::from_secs(200_000_000)), "3333334M");
        for d in [Duration::from_millis(1234), Duration::from_secs(99_999), Duration::from_nanos(123_456_789_012)] {
            let s = encode_timeout(d);
            assert!(s.len() <= 9, "{s}");
            assert!(decode_timeout(&s).unwrap() >= d);
        }
    }

    #[test]
    fn decode_rejects_malformed() {
        assert_eq!(decode_timeout("1S").unwrap(), Duration::from_secs(1));
        assert_eq!(decode_timeout("2M").unwrap(), Duration::from_secs(120));
        assert_eq!(decode_timeout("12345678m").unwrap(), Duration::from_millis(12_345_678));
        for bad in ["", "S", "1", "123456789S", "1x", "-1S", "1.5S", " 1S", "abcS"] {
            assert!(decode_timeout(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
