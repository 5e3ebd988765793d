//! Secrets in URLs: a database's or a broker's URL as logs and error messages show it.

use url::Url;

/// `url` with its password, if any, replaced by `***` (`amqp://guest:***@host/`): what logs and
/// error messages show. Whatever follows the password stays readable; a string that is not a
/// URL has whatever sits between `://` and its last `@` hidden instead.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        // Not a URL: hide whatever sits between `://` and the last `@`.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(start), Some(at)) if at > start + 3 => {
                let user_end = url[start + 3..at].find(':').map_or(at, |i| start + 3 + i);
                format!("{}:***{}", &url[..user_end], &url[at..])
            }
            _ => url.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_for_logs() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/okra"),
            "postgres://app:***@db:5432/okra"
        );
        assert_eq!(redact("postgres://app@db/okra"), "postgres://app@db/okra");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn broker_urls_are_redacted_too() {
        assert_eq!(redact("amqp://guest:guest@host/"), "amqp://guest:***@host/");
        assert_eq!(redact("nats://host:4222"), "nats://host:4222");
    }
}
