//! Outputs: hand every callback to an HTTP service ([`ForwardHandler`], `--forward-url`) or to a
//! message broker (NATS JetStream, Redis Streams or RabbitMQ, `--output URL`).
//!
//! Each output is a [`Handler`], so the binary plugs them in with its flags and a library
//! user composes them with their own handlers in an [`AllOf`](crate::AllOf). A broker output returns
//! `Ok` only once the broker confirmed the message (JetStream PubAck, the XADD reply, a RabbitMQ
//! publisher confirm); anything else is a failed attempt that the dispatcher retries with its
//! usual backoff. As the dispatcher hands a record's callbacks over one at a time, each after the
//! previous one succeeded, a record's messages reach the broker in the order they were received.
//!
//! Outputs connect lazily and reconnect by themselves: a broker that is down at start-up does not
//! stop the receiver from starting or from acknowledging Okra — its callbacks stay pending.
//!
//! Every message is the callback's original body bytes; the callback id (for de-duplication
//! downstream), record, type and code travel as headers or fields.
//!
//! ```no_run
//! use okra_callbacks::{output::NatsOutput, AllOf, LogHandler};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let nats = NatsOutput::connect("nats://127.0.0.1:4222?subject=okra.{callback_type}".parse()?).await?;
//! let handlers = AllOf::new().with(nats).with(LogHandler::new());
//! # Ok(()) }
//! ```

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use url::Url;

use crate::{callback::Envelope, handler::Handler, telemetry::redact};

mod amqp;
mod forward;
mod nats;
mod redis;

pub use self::amqp::{AmqpConfig, AmqpOutput};
pub use self::forward::{request_failure, ForwardHandler};
pub use self::nats::{NatsConfig, NatsOutput};
pub use self::redis::{RedisConfig, RedisOutput};

/// How long one connection attempt to a broker may take before the attempt counts as failed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An `--output` URL that cannot be used; the message says what is wrong and how to fix it, and
/// shows the URL with its password replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutputConfigError(pub String);

/// The `--output` flag of the binary: one URL per broker output, repeatable, or comma-separated
/// in `OKRA_OUTPUTS`. Kept as text until [`OutputArgs::configs`], so clap never echoes a
/// password in an error.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Hand every callback to a broker too: `nats://HOST:PORT?subject=…` (JetStream),
    /// `redis://HOST:PORT[/DB]?stream=…` (Streams), `amqp://USER:PASS@HOST:PORT/VHOST?exchange=…&routing_key=…`
    /// (RabbitMQ). Repeatable; templates may use {callback_type}, {callback_code} and {record}.
    #[arg(
        long = "output",
        env = "OKRA_OUTPUTS",
        value_name = "URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub outputs: Vec<String>,
}

impl OutputArgs {
    /// Parses every URL; the first bad one fails with a message saying what to fix.
    pub fn configs(&self) -> Result<Vec<OutputConfig>, OutputConfigError> {
        self.outputs
            .iter()
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
            .map(OutputConfig::parse)
            .collect()
    }
}

/// One output, parsed from its URL and validated: which broker, where, and where to publish.
#[derive(Clone, PartialEq, Eq)]
pub enum OutputConfig {
    /// `nats://…`: JetStream.
    Nats(NatsConfig),
    /// `redis://…`: Redis Streams.
    Redis(RedisConfig),
    /// `amqp://…`: RabbitMQ.
    Amqp(AmqpConfig),
}

impl OutputConfig {
    /// Parses an `--output` URL, applying the defaults of each scheme.
    pub fn parse(url: &str) -> Result<Self, OutputConfigError> {
        let shown = redact(url);
        let parsed = Url::parse(url).map_err(|e| {
            OutputConfigError(format!(
                "--output `{shown}` is not a URL ({e}): write e.g. nats://127.0.0.1:4222, redis://127.0.0.1:6379 or amqp://guest:guest@127.0.0.1:5672/%2f"
            ))
        })?;
        match parsed.scheme() {
            "nats" => nats::NatsConfig::from_url(parsed, &shown).map(Self::Nats),
            "redis" => self::redis::RedisConfig::from_url(parsed, &shown).map(Self::Redis),
            "amqp" => amqp::AmqpConfig::from_url(parsed, &shown).map(Self::Amqp),
            other => Err(OutputConfigError(format!(
                "--output `{shown}`: unknown scheme `{other}`: use nats:// (JetStream), redis:// (Streams) or amqp:// (RabbitMQ)"
            ))),
        }
    }

    /// Connects the output this URL describes, as a handler. Connecting is lazy: a broker that
    /// is down now is not an error here; its callbacks fail and are retried until it is back.
    pub async fn connect(&self) -> Result<Arc<dyn Handler>, OutputConfigError> {
        Ok(match self {
            Self::Nats(c) => Arc::new(NatsOutput::connect(c.clone()).await?),
            Self::Redis(c) => Arc::new(RedisOutput::connect(c.clone()).await?),
            Self::Amqp(c) => Arc::new(AmqpOutput::connect(c.clone()).await?),
        })
    }
}

impl FromStr for OutputConfig {
    type Err = OutputConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Shows the output with its password replaced by `***`: safe to log.
impl fmt::Display for OutputConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nats(c) => c.fmt(f),
            Self::Redis(c) => c.fmt(f),
            Self::Amqp(c) => c.fmt(f),
        }
    }
}

impl fmt::Debug for OutputConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Connects every output of `configs`, in order, as handlers to chain after the others.
pub async fn connect_all(
    configs: &[OutputConfig],
) -> Result<Vec<Arc<dyn Handler>>, OutputConfigError> {
    let mut out = Vec::with_capacity(configs.len());
    for c in configs {
        out.push(c.connect().await?);
    }
    Ok(out)
}

/// Implements `FromStr` for a broker's config: the URL must be of that broker's scheme.
macro_rules! parse_as {
    ($config:ident, $variant:ident, $scheme:literal) => {
        impl std::str::FromStr for $config {
            type Err = OutputConfigError;
            fn from_str(url: &str) -> Result<Self, OutputConfigError> {
                match OutputConfig::parse(url)? {
                    OutputConfig::$variant(c) => Ok(c),
                    _ => Err(OutputConfigError(format!(
                        "`{}` is not a {} URL: write {}://…",
                        redact(url),
                        $scheme,
                        $scheme
                    ))),
                }
            }
        }
    };
}
parse_as!(NatsConfig, Nats, "nats");
parse_as!(RedisConfig, Redis, "redis");
parse_as!(AmqpConfig, Amqp, "amqp");

/// The query parameters of an output URL, taken one by one; what is left over is an error.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub(crate) fn of(url: &Url) -> Self {
        Self {
            pairs: url.query_pairs().into_owned().collect(),
        }
    }

    /// Takes the value of `name`, if given (the last one wins).
    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        let mut value = None;
        self.pairs.retain(|(k, v)| {
            if k == name {
                value = Some(v.clone());
                false
            } else {
                true
            }
        });
        value
    }

    /// Fails on any parameter not taken, naming the valid ones.
    pub(crate) fn finish(self, shown: &str, valid: &[&str]) -> Result<(), OutputConfigError> {
        match self.pairs.first() {
            None => Ok(()),
            Some((k, _)) => Err(OutputConfigError(format!(
                "--output `{shown}`: unknown parameter `{k}`: valid parameters are {}",
                valid.join(", ")
            ))),
        }
    }
}

/// A part of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    CallbackType,
    CallbackCode,
    Record,
    Source,
}

/// A subject, stream key or routing key with placeholders filled from each callback:
/// `{callback_type}`, `{callback_code}`, `{record}` and `{source}` (`okra` for Okra's). Checked
/// once at start-up.
///
/// Filled-in values keep ASCII letters, digits, `-` and `_`; any other character becomes `_`, so
/// a record id can never add a NATS subject or AMQP routing-key level (`.`) or wildcard. A
/// callback without a code fills `{callback_code}` with `NONE`.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template; an unknown placeholder or an unmatched brace is an error that lists the
    /// valid placeholders.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            if rest[i..].starts_with('}') {
                return Err(format!(
                    "`{source}` has a `}}` without its `{{`: placeholders are {{callback_type}}, {{callback_code}}, {{record}} and {{source}}"
                ));
            }
            let Some(end) = rest[i..].find('}') else {
                return Err(format!(
                    "`{source}` has a `{{` without its `}}`: placeholders are {{callback_type}}, {{callback_code}}, {{record}} and {{source}}"
                ));
            };
            let name = &rest[i + 1..i + end];
            let part = match name {
                "callback_type" => Part::CallbackType,
                "callback_code" => Part::CallbackCode,
                "record" => Part::Record,
                "source" => Part::Source,
                other => {
                    return Err(format!(
                        "`{source}` uses the unknown placeholder {{{other}}}: use {{callback_type}}, {{callback_code}}, {{record}} or {{source}}"
                    ))
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &rest[i + end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if parts.is_empty() {
            return Err(
                "the template is empty: give a name, e.g. okra.callbacks.{callback_type}".into(),
            );
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The template filled with `x` for every placeholder: the shape start-up checks validate.
    pub(crate) fn probe(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.as_str(),
                _ => "x",
            })
            .collect()
    }

    /// Fills the template in for one callback.
    pub fn render(&self, envelope: &Envelope) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::CallbackType => push_clean(&mut out, envelope.callback_type()),
                Part::CallbackCode => {
                    push_clean(&mut out, envelope.callback_code().unwrap_or("NONE"))
                }
                Part::Record => push_clean(&mut out, envelope.record().as_str()),
                Part::Source => push_clean(&mut out, envelope.source()),
            }
        }
        out
    }
}

fn push_clean(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('_');
    }
    out.extend(value.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        }
    }));
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// `url` as it will be shown: no query (the output adds its own), password hidden.
pub(crate) fn server_of(url: &Url) -> Url {
    let mut server = url.clone();
    server.set_query(None);
    server.set_fragment(None);
    server
}

/// `url` with its password hidden, as logs and error messages show it.
pub(crate) fn redact_url(url: &Url) -> String {
    redact(url.as_str())
}

/// The callback fields every message carries besides its body and its source, in the order the
/// outputs write them.
pub(crate) fn fields(cx: &crate::handler::Context) -> [(&'static str, &str); 4] {
    let env = &cx.envelope;
    [
        ("id", cx.id.as_str()),
        ("record", env.record().as_str()),
        ("callback_type", env.callback_type()),
        ("callback_code", env.callback_code().unwrap_or("")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::nats::DEFAULT_SUBJECT as DEFAULT_NATS_SUBJECT;

    fn envelope(body: &str) -> Envelope {
        Envelope::parse(body.as_bytes().to_vec()).unwrap()
    }

    fn err(url: &str) -> String {
        OutputConfig::parse(url).unwrap_err().0
    }

    #[test]
    fn each_scheme_gets_the_contract_defaults() {
        let OutputConfig::Nats(n) = OutputConfig::parse("nats://127.0.0.1:4222").unwrap() else {
            panic!("nats")
        };
        assert_eq!(n.subject.as_str(), "okra.callbacks.{callback_type}");
        assert_eq!(n.server.as_str(), "nats://127.0.0.1:4222");

        let OutputConfig::Redis(r) = OutputConfig::parse("redis://127.0.0.1:6379/2").unwrap()
        else {
            panic!("redis")
        };
        assert_eq!(r.stream.as_str(), "okra:callbacks");
        assert_eq!(r.server.as_str(), "redis://127.0.0.1:6379/2");

        let OutputConfig::Amqp(a) =
            OutputConfig::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap()
        else {
            panic!("amqp")
        };
        assert_eq!(a.exchange, "okra.callbacks");
        assert_eq!(a.routing_key.as_str(), "{callback_type}.{callback_code}");
        assert_eq!(a.server.as_str(), "amqp://guest:guest@127.0.0.1:5672/%2f");
    }

    #[test]
    fn parameters_override_the_defaults_and_leave_the_server_url() {
        let OutputConfig::Nats(n) =
            OutputConfig::parse("nats://127.0.0.1:4222?subject=bank.{record}.{callback_code}")
                .unwrap()
        else {
            panic!("nats")
        };
        assert_eq!(n.subject.as_str(), "bank.{record}.{callback_code}");
        assert_eq!(n.server.query(), None);

        let OutputConfig::Redis(r) =
            OutputConfig::parse("redis://127.0.0.1:6379?stream=okra:{callback_type}").unwrap()
        else {
            panic!("redis")
        };
        assert_eq!(r.stream.as_str(), "okra:{callback_type}");

        let OutputConfig::Amqp(a) = OutputConfig::parse(
            "amqp://u:p@127.0.0.1:5672/prod?exchange=bank&routing_key={record}&heartbeat=10",
        )
        .unwrap() else {
            panic!("amqp")
        };
        assert_eq!(a.exchange, "bank");
        assert_eq!(a.routing_key.as_str(), "{record}");
        // lapin's own parameters stay in the URL it connects to.
        assert_eq!(a.server.query(), Some("heartbeat=10"));
    }

    #[test]
    fn templates_fill_in_clean_values() {
        let t = Template::parse("okra.{callback_type}.{callback_code}.{record}").unwrap();
        let e = envelope(
            r#"{"callback_type":"TRANSACTIONS","callback_code":"PERIODIC_TRANSACTIONS","record":"5f3c*a.b >c"}"#,
        );
        assert_eq!(
            t.render(&e),
            "okra.TRANSACTIONS.PERIODIC_TRANSACTIONS.5f3c_a_b__c"
        );
        let no_code = envelope(r#"{"callback_type":"AUTH","record":"r1"}"#);
        assert_eq!(t.render(&no_code), "okra.AUTH.NONE.r1");
        assert_eq!(Template::parse("fixed").unwrap().render(&no_code), "fixed");
    }

    #[test]
    fn templates_fill_in_the_source() {
        let t = Template::parse("hooks.{source}.{callback_type}").unwrap();
        let okra = envelope(r#"{"callback_type":"AUTH","record":"r1"}"#);
        assert_eq!(t.render(&okra), "hooks.okra.AUTH");
        let event = crate::callback::Event {
            source: "paystack".into(),
            record: "CUS_1".into(),
            callback_type: "charge.success".into(),
            callback_code: None,
            event_id: None,
        };
        let paystack = Envelope::from_event(event, b"{}".to_vec(), Default::default()).unwrap();
        assert_eq!(t.render(&paystack), "hooks.paystack.charge_success");
    }

    #[test]
    fn an_unknown_placeholder_or_a_stray_brace_fails_naming_the_valid_ones() {
        let e = err("nats://127.0.0.1:4222?subject=okra.{callback_kind}");
        assert!(e.contains("unknown placeholder {callback_kind}"), "{e}");
        assert!(
            e.contains("{callback_type}, {callback_code}, {record} or {source}"),
            "{e}"
        );
        let e = err("redis://127.0.0.1?stream=okra:{record");
        assert!(e.contains("without its `}`"), "{e}");
        let e = err("amqp://127.0.0.1?routing_key=a}b");
        assert!(e.contains("without its `{`"), "{e}");
        let e = err("redis://127.0.0.1?stream=");
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn an_unknown_scheme_fails_naming_the_supported_ones() {
        let e = err("kafka://127.0.0.1:9092");
        assert!(e.contains("unknown scheme `kafka`"), "{e}");
        assert!(
            e.contains("nats://") && e.contains("redis://") && e.contains("amqp://"),
            "{e}"
        );
    }

    #[test]
    fn a_malformed_url_fails_with_an_example() {
        for bad in [
            "127.0.0.1:4222",
            "nats//host",
            "amqp://guest:guest@:5672",
            "nats://",
        ] {
            let e = err(bad);
            assert!(e.contains("--output"), "{bad}: {e}");
            assert!(e.contains("e.g.") || e.contains("write"), "{bad}: {e}");
        }
        let e = err("nats://127.0.0.1:4222?subjekt=a");
        assert!(e.contains("unknown parameter `subjekt`"), "{e}");
        assert!(e.contains("subject"), "{e}");
        let e = err("nats://127.0.0.1:4222?subject=okra callbacks");
        assert!(e.contains("space"), "{e}");
        let e = err("amqp://127.0.0.1?exchange=bad%20name");
        assert!(e.contains("exchange"), "{e}");
    }

    #[test]
    fn passwords_never_show_in_display_debug_or_errors() {
        let c = OutputConfig::parse("amqp://guest:s3cret@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(
            c.to_string(),
            "amqp://guest:***@127.0.0.1:5672/%2f?exchange=okra.callbacks&routing_key={callback_type}.{callback_code}"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = OutputConfig::parse("redis://:pw123@127.0.0.1:6379").unwrap();
        assert!(!c.to_string().contains("pw123"), "{c}");
        let c = OutputConfig::parse("nats://u:natspw@127.0.0.1:4222").unwrap();
        assert!(!format!("{c} {c:?}").contains("natspw"), "{c}");
        for bad in [
            "amqp://guest:s3cret@127.0.0.1:5672?exchange={x}",
            "amqp://guest:s3cret@127.0.0.1:5672?routing_key={x}",
            "kafka://guest:s3cret@127.0.0.1:9092",
            "nats://guest:s3cret@127.0.0.1:4222?nope=1",
            "nats://guest:s3cret@[::1",
        ] {
            let e = err(bad);
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("guest:***@"), "{e}");
        }
    }

    #[test]
    fn each_config_parses_from_its_own_scheme_only() {
        let n: NatsConfig = "nats://127.0.0.1:4222".parse().unwrap();
        assert_eq!(n.subject.as_str(), DEFAULT_NATS_SUBJECT);
        let e = "redis://u:pw@127.0.0.1"
            .parse::<NatsConfig>()
            .unwrap_err()
            .0;
        assert!(e.contains("not a nats URL") && !e.contains("pw@"), "{e}");
        assert!("amqp://127.0.0.1".parse::<AmqpConfig>().is_ok());
        assert!("amqp://127.0.0.1".parse::<RedisConfig>().is_err());
    }

    #[test]
    fn the_flag_takes_repeated_urls_and_a_comma_separated_list() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            outputs: OutputArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--output",
            "nats://127.0.0.1:4222",
            "--output",
            "redis://127.0.0.1:6379,amqp://127.0.0.1:5672",
        ])
        .unwrap();
        let configs = cli.outputs.configs().unwrap();
        let shown: Vec<String> = configs.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                "nats://127.0.0.1:4222?subject=okra.callbacks.{callback_type}",
                "redis://127.0.0.1:6379?stream=okra:callbacks",
                "amqp://127.0.0.1:5672?exchange=okra.callbacks&routing_key={callback_type}.{callback_code}",
            ]
        );
        let cli = Cli::try_parse_from(["x", "--output", "mqtt://127.0.0.1"]).unwrap();
        assert!(cli.outputs.configs().unwrap_err().0.contains("mqtt"));
        let none = Cli::try_parse_from(["x"]).unwrap();
        assert!(none.outputs.configs().unwrap().is_empty());
    }
}
