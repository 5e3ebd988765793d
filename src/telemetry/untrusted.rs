//! Log escaping: every value that came from a request is written to logs through [`Untrusted`].

/// A value that came from a request (or from a handler's error), as it is written to logs: in
/// text and JSON formats, in spans and events, at every level. Log it with `%`:
///
/// ```
/// use okra_callbacks::telemetry::Untrusted;
///
/// let record = "r1\u{1b}[31m\n2026-12-01T00:00:00Z  INFO forged";
/// tracing::info!(record = %Untrusted(record), "callback received");
/// assert_eq!(
///     Untrusted(record).to_string(),
///     r#""r1\u{1b}[31m\n2026-12-01T00:00:00Z  INFO forged""#
/// );
/// assert_eq!(Untrusted("5f8d1e2a9c").to_string(), "5f8d1e2a9c");
/// ```
///
/// Control characters (C0, DEL, C1), Unicode format characters (bidirectional overrides,
/// zero-width characters) and line or paragraph separators are written as escapes (`\n`,
/// `\u{1b}`), a backslash as `\\`, so the line shows exactly what was sent, unambiguously. A
/// value holding whitespace, `"` or `=`, or an empty one, is also quoted, so it cannot pass for
/// another `key=value` field of a text line. Ordinary ids, types and codes are written as they
/// are.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Untrusted<'a>(pub &'a str);

impl Untrusted<'_> {
    /// Whether `c` is written as an escape.
    fn escapes(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\\'
                    | '\u{00ad}'
                    | '\u{061c}'
                    | '\u{180e}'
                    | '\u{200b}'..='\u{200f}'
                    | '\u{2028}'..='\u{202e}'
                    | '\u{2060}'..='\u{206f}'
                    | '\u{feff}'
                    | '\u{fff9}'..='\u{fffb}'
            )
    }

    /// Whether the value is quoted.
    fn quoted(&self) -> bool {
        self.0.is_empty()
            || self
                .0
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '=')
    }
}

impl std::fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let quoted = self.quoted();
        if quoted {
            f.write_char('"')?;
        }
        let mut rest = self.0;
        while let Some(at) = rest.find(|c: char| Self::escapes(c) || (quoted && c == '"')) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().expect("found at a char boundary");
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)?;
        if quoted {
            f.write_char('"')?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_values_are_escaped_and_quoted_when_odd() {
        let shown = |s: &str| Untrusted(s).to_string();
        assert_eq!(
            shown("5f8d1e2a9c1b2a0012345678"),
            "5f8d1e2a9c1b2a0012345678"
        );
        assert_eq!(shown("PERIODIC_TRANSACTIONS"), "PERIODIC_TRANSACTIONS");
        assert_eq!(shown(""), r#""""#);
        assert_eq!(shown("r\u{1b}[31m"), r"r\u{1b}[31m");
        assert_eq!(shown("a\u{7f}\u{9b}b"), r"a\u{7f}\u{9b}b");
        assert_eq!(shown("a\\nb"), r"a\\nb", "a backslash is not an escape");
        assert_eq!(shown("a\u{202e}b"), r"a\u{202e}b");
        assert_eq!(
            shown("a\u{2028}b"),
            r#""a\u{2028}b""#,
            "a separator is whitespace"
        );
        assert_eq!(shown("r1 callback_type=AUTH"), r#""r1 callback_type=AUTH""#);
        assert_eq!(
            shown("T\n2026-12-01T00:00:00Z  INFO \"x\""),
            r#""T\n2026-12-01T00:00:00Z  INFO \"x\"""#
        );
        assert_eq!(shown("naïve-ₙ"), "naïve-ₙ", "printable Unicode is kept");
        for s in ["a\rb", "\u{1b}", "x\u{0}y", "\u{85}", "é\tè"] {
            assert!(!shown(s).chars().any(char::is_control), "{s:?}");
        }
    }
}
