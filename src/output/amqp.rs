//! RabbitMQ (AMQP 0-9-1) output: publishes each callback as a persistent message to a topic
//! exchange and waits for the publisher confirm.

use std::fmt;

use async_trait::async_trait;
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::Mutex;
use url::Url;

use super::{redact_url, server_of, OutputConfigError, Params, Template, CONNECT_TIMEOUT};
use crate::handler::{Context, Handler, HandlerError, HandlerResult};

/// The exchange when the URL names none.
pub(crate) const DEFAULT_EXCHANGE: &str = "okra.callbacks";
/// The routing key when the URL names none.
pub(crate) const DEFAULT_ROUTING_KEY: &str = "{callback_type}.{callback_code}";

/// Where an [`AmqpOutput`] publishes:
/// `amqp://USER:PASS@HOST[:PORT][/VHOST][?exchange=NAME&routing_key=TEMPLATE]`.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpConfig {
    /// The broker and virtual host to connect to, with lapin's own parameters (`heartbeat`, …);
    /// credentials included, never shown.
    pub server: Url,
    /// The durable topic exchange messages go to; declared if missing.
    pub exchange: String,
    /// The routing key of each message.
    pub routing_key: Template,
}

impl AmqpConfig {
    pub(crate) fn from_url(url: Url, shown: &str) -> Result<Self, OutputConfigError> {
        if !url.has_host() || url.host_str() == Some("") {
            return Err(OutputConfigError(format!(
                "--output `{shown}` names no server: write e.g. amqp://guest:guest@127.0.0.1:5672/%2f"
            )));
        }
        let mut params = Params::of(&url);
        let exchange = params
            .take("exchange")
            .unwrap_or_else(|| DEFAULT_EXCHANGE.into());
        let routing_key = params
            .take("routing_key")
            .unwrap_or_else(|| DEFAULT_ROUTING_KEY.into());
        let valid_exchange = !exchange.is_empty()
            && exchange.len() <= 255
            && exchange
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if !valid_exchange || exchange.starts_with("amq.") {
            return Err(OutputConfigError(format!(
                "--output `{shown}`: exchange `{exchange}` is not a name this output can declare: use letters, digits, -, _, . and : (not starting with amq.), e.g. okra.callbacks"
            )));
        }
        let routing_key = Template::parse(&routing_key)
            .map_err(|e| OutputConfigError(format!("--output `{shown}`: routing_key {e}")))?;
        if routing_key.probe().len() > 255 || routing_key.probe().contains(['*', '#']) {
            return Err(OutputConfigError(format!(
                "--output `{shown}`: routing_key `{routing_key}` must be a concrete key (no * or #) of at most 255 bytes"
            )));
        }
        // What is left (heartbeat, connection_timeout, …) is lapin's to read.
        let mut server = server_of(&url);
        let rest: Vec<(String, String)> = Params::of(&url)
            .pairs
            .into_iter()
            .filter(|(k, _)| k != "exchange" && k != "routing_key")
            .collect();
        if !rest.is_empty() {
            server.query_pairs_mut().extend_pairs(rest);
        }
        server
            .as_str()
            .parse::<lapin::uri::AMQPUri>()
            .map_err(|e| OutputConfigError(format!("--output `{shown}`: {e}")))?;
        Ok(Self {
            server,
            exchange,
            routing_key,
        })
    }
}

impl fmt::Display for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = redact_url(&self.server);
        let sep = if self.server.query().is_some() {
            '&'
        } else {
            '?'
        };
        write!(
            f,
            "{server}{sep}exchange={}&routing_key={}",
            self.exchange, self.routing_key
        )
    }
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// An open connection and the confirm-mode channel every publish shares.
struct Link {
    connection: Connection,
    channel: Channel,
}

/// Publishes each callback to a RabbitMQ topic exchange as a persistent message (delivery mode
/// 2) with `message_id` = the callback id, `content_type: application/json` and headers
/// `record`, `callback_type`, `callback_code` and `Okra-Source`. Succeeds once the broker confirmed it; a nack, or a
/// message no queue is bound to receive (it is published `mandatory` and comes back), is a
/// failure.
pub struct AmqpOutput {
    server: Url,
    exchange: String,
    routing_key: Template,
    /// Opened on first use; replaced when it breaks. Held only while connecting: publishes run
    /// concurrently on the shared channel.
    link: Mutex<Option<Link>>,
    /// The server, password hidden, for error messages.
    shown: String,
}

impl AmqpOutput {
    /// Prepares the output without connecting: the first callback connects (and declares the
    /// exchange), so a broker that is down now only makes callbacks wait.
    pub async fn connect(config: AmqpConfig) -> Result<Self, OutputConfigError> {
        Ok(Self {
            shown: redact_url(&config.server),
            server: config.server,
            exchange: config.exchange,
            routing_key: config.routing_key,
            link: Mutex::new(None),
        })
    }

    /// The shared channel, (re)connecting when there is none or it broke.
    async fn channel(&self) -> Result<Channel, HandlerError> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref() {
            if l.connection.status().connected() && l.channel.status().connected() {
                return Ok(l.channel.clone());
            }
            tracing::warn!(output = "amqp", server = %self.shown, "connection lost; reconnecting");
        }
        if let Some(old) = link.take() {
            // The channel may have closed on an error while the connection lives on.
            if old.connection.status().connected() {
                tokio::spawn(async move {
                    let _ = old.connection.close(200, "reconnecting".into()).await;
                });
            }
        }
        let fresh = tokio::time::timeout(CONNECT_TIMEOUT, self.open())
            .await
            .map_err(|_| {
                HandlerError::msg(format_args!(
                    "cannot connect to RabbitMQ at {}: no answer within {}",
                    self.shown,
                    crate::telemetry::format_duration(CONNECT_TIMEOUT)
                ))
            })??;
        let channel = fresh.channel.clone();
        *link = Some(fresh);
        tracing::info!(output = "amqp", server = %self.shown, exchange = %self.exchange, "connected");
        Ok(channel)
    }

    async fn open(&self) -> Result<Link, HandlerError> {
        let fail = |what: &str, e: lapin::Error| {
            HandlerError::msg(format_args!("RabbitMQ at {}: {what}: {e}", self.shown))
        };
        let properties =
            ConnectionProperties::default().with_connection_name("okra-callbacks".into());
        let connection = Connection::connect(self.server.as_str(), properties)
            .await
            .map_err(|e| fail("cannot connect", e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| fail("cannot open a channel", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| fail("cannot turn on publisher confirms", e))?;
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                fail(
                    &format!(
                        "cannot declare the durable topic exchange `{}` (does one of another type exist?)",
                        self.exchange
                    ),
                    e,
                )
            })?;
        Ok(Link {
            connection,
            channel,
        })
    }
}

#[async_trait]
impl Handler for AmqpOutput {
    fn name(&self) -> &str {
        "amqp"
    }

    async fn handle(&self, cx: &Context) -> HandlerResult {
        let channel = self.channel().await?;
        let env = &cx.envelope;
        let routing_key = self.routing_key.render(env);
        let mut headers = FieldTable::default();
        for (name, value) in super::fields(cx).into_iter().skip(1) {
            headers.insert(
                name.into(),
                AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
            );
        }
        headers.insert(
            "Okra-Source".into(),
            AMQPValue::LongString(LongString::from(env.source().as_bytes().to_vec())),
        );
        let properties = BasicProperties::default()
            .with_message_id(cx.id.as_str().into())
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                self.exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                env.raw(),
                properties,
            )
            .await
            .map_err(|e| {
                HandlerError::msg(format_args!(
                    "publish to RabbitMQ at {} failed: {e}",
                    self.shown
                ))
            })?
            .await
            .map_err(|e| {
                HandlerError::msg(format_args!(
                    "RabbitMQ at {} did not confirm the message: {e}",
                    self.shown
                ))
            })?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(HandlerError::msg(format_args!(
                "no queue is bound to exchange `{}` for routing key `{routing_key}`: bind one (e.g. with binding key #) so messages are kept",
                self.exchange
            ))),
            Confirmation::Nack(_) => Err(HandlerError::msg(format_args!(
                "RabbitMQ refused the message for exchange `{}` (nack); it will be retried",
                self.exchange
            ))),
            Confirmation::NotRequested => Err(HandlerError::msg(
                "RabbitMQ publisher confirms are off on this channel; the message is not confirmed",
            )),
        }
    }
}
