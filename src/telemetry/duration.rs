//! Durations as people read them in messages and logs: `1.67s`, `7.5s`, `250ms`, `2m`, never
//! `1s 666ms 666us 666ns`. Each is also a value the duration flags accept.

use std::time::Duration;

/// A duration the way the duration flags are written: under a minute in its largest unit with at
/// most two decimals (`1.67s`, `7.5s`, `250ms`, `40us`), from a minute on in whole seconds split
/// into units (`2m`, `1m 30s`, `1h`, `1d 2h`). Used by every message and log line that shows one.
pub fn format_duration(d: Duration) -> String {
    const MINUTE_NS: u128 = 60_000_000_000;
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    // (unit, nanoseconds in it, below how many of it the next unit takes over)
    let units: [(&str, u128, u128); 4] = [
        ("ns", 1, 1000),
        ("us", 1_000, 1000),
        ("ms", 1_000_000, 1000),
        ("s", 1_000_000_000, 60),
    ];
    for (unit, size, below) in units {
        let hundredths = (nanos * 100 + size / 2) / size;
        if hundredths < below * 100 {
            return with_decimals(hundredths, unit);
        }
    }
    let mut seconds = (nanos + MINUTE_NS / 120) / 1_000_000_000;
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            parts.push(format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    parts.join(" ")
}

/// `hundredths` of `unit`, with no trailing zero decimals: `1.67s`, `7.5s`, `250ms`.
fn with_decimals(hundredths: u128, unit: &str) -> String {
    let (whole, fraction) = (hundredths / 100, hundredths % 100);
    match fraction {
        0 => format!("{whole}{unit}"),
        f if f % 10 == 0 => format!("{whole}.{}{unit}", f / 10),
        f => format!("{whole}.{f:02}{unit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_writes_them() {
        let cases = [
            (Duration::from_nanos(5_000_000_000 / 3), "1.67s"),
            (Duration::from_millis(7_500), "7.5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(3_600), "1h"),
            (Duration::from_secs(90 * 86_400), "90d"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_micros(40), "40us"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::ZERO, "0s"),
            // Rounding never shows 1000ms or 60s: the next unit takes over.
            (Duration::from_nanos(999_999_999), "1s"),
            (Duration::from_millis(59_999), "1m"),
        ];
        for (duration, shown) in cases {
            assert_eq!(format_duration(duration), shown, "{duration:?}");
        }
    }

    #[test]
    fn what_is_shown_parses_back_as_a_flag_value() {
        for ms in [1, 250, 1_667, 7_500, 90_000, 3_600_000] {
            let d = Duration::from_millis(ms);
            let back = humantime::parse_duration(&format_duration(d)).unwrap();
            let error = back.abs_diff(d);
            assert!(
                error <= d / 100,
                "{d:?} → {} → {back:?}",
                format_duration(d)
            );
        }
    }
}
