//! The sources file (`--sources FILE`): TOML `[sources.NAME]` tables, each a `preset` and its
//! settings, turned into [`Sources`] once at start-up.
//!
//! Every mistake stops the start-up with a [`SourcesError`] that names the source and the
//! setting: an unknown preset or setting, a missing setting, an unset `${VAR}`, an unreadable
//! `secret_file`, a bad JSON pointer or secret.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::http::HeaderName;
use toml::{Table, Value};

use crate::callback::OKRA;

use super::{
    plaid::PlaidCheck,
    plaid_keys::PlaidKeys,
    read::{EventIdAt, Pointer, Reader},
    sources::Check,
    Algorithm, Encoding, HmacHeader, Key, Source, Sources, StandardWebhooks,
};

/// Plaid's production API, where its key service is unless `api_url` says otherwise.
pub const PLAID_API_URL: &str = "https://production.plaid.com";
/// The presets a source may name.
const PRESETS: &str = "plaid, mono, standard-webhooks, paystack, generic";
/// The verification schemes a `generic` source may name.
const SCHEMES: &str = "token, header-secret, hmac, standard-webhooks, none";

/// Why the sources file cannot be used. It names the file, the source and the setting where
/// they apply; it never holds a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SourcesError {
    /// The file, when read from one.
    pub file: Option<PathBuf>,
    /// The source (`[sources.NAME]`) at fault, when one is.
    pub source_name: Option<String>,
    /// The setting at fault (`secret`, `verify.header`…), when one is.
    pub setting: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for SourcesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the sources file")?;
        if let Some(file) = &self.file {
            write!(f, " {}", file.display())?;
        }
        if let Some(name) = &self.source_name {
            write!(f, ", source `{name}`")?;
        }
        if let Some(setting) = &self.setting {
            write!(f, ", setting `{setting}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn error(source: Option<&str>, setting: Option<&str>, message: impl Into<String>) -> SourcesError {
    SourcesError {
        file: None,
        source_name: source.map(str::to_owned),
        setting: setting.map(str::to_owned),
        message: message.into(),
    }
}

/// Where `${VAR}` values are looked up: the process environment, or a test's map.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Sources {
    /// Reads the sources file at `path`, with `${VAR}` values from the environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SourcesError> {
        let path = path.as_ref();
        let with_file = |mut e: SourcesError| {
            e.file = Some(path.to_owned());
            e
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            with_file(error(
                None,
                None,
                format!(
                    "it cannot be read ({e}): check the path given to --sources (OKRA_SOURCES)"
                ),
            ))
        })?;
        Self::from_toml(&text).map_err(with_file)
    }

    /// Reads a sources file's text, with `${VAR}` values from the environment.
    pub fn from_toml(text: &str) -> Result<Self, SourcesError> {
        Self::from_toml_with_env(text, &|name| std::env::var(name).ok())
    }

    /// Reads a sources file's text, with `${VAR}` values from `env` (for tests and embedders
    /// that keep settings elsewhere).
    pub fn from_toml_with_env(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SourcesError> {
        let table: Table = text
            .parse()
            .map_err(|e| error(None, None, format!("it is not valid TOML: {e}")))?;
        if let Some(other) = table.keys().find(|k| *k != "sources") {
            return Err(error(None, None, format!("`{other}` is not a section of a sources file: write each source as a `[sources.NAME]` table")));
        }
        let sources = match table.get("sources") {
            Some(Value::Table(t)) if !t.is_empty() => t,
            _ => {
                return Err(error(
                    None,
                    None,
                    "it defines no source: add a `[sources.NAME]` table with a `preset`",
                ))
            }
        };
        let mut by_name = BTreeMap::new();
        let mut warnings = Vec::new();
        for (name, value) in sources {
            check_name(name)?;
            let Value::Table(table) = value else {
                return Err(error(
                    Some(name),
                    None,
                    "write it as a `[sources.NAME]` table",
                ));
            };
            let mut settings = Settings::new(name, "", table, env);
            let source = build(&mut settings)?;
            settings.finish()?;
            if matches!(source.check, Check::None) {
                warnings.push(format!(
                    "source `{name}` checks nothing (verification `none`): anyone who can reach POST /v1/sources/{name} can post callbacks to it; configure its provider's signature"
                ));
            }
            by_name.insert(name.clone(), Arc::new(source));
        }
        Ok(Self { by_name, warnings })
    }
}

fn check_name(name: &str) -> Result<(), SourcesError> {
    let well_formed = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !well_formed {
        return Err(error(Some(name), None, "a source's name is 1 to 32 characters of a-z, 0-9, `_` and `-` (it is part of the URL /v1/sources/NAME)"));
    }
    if name == OKRA {
        return Err(error(Some(name), None, "`okra` is reserved for Okra's callbacks at /v1/callback: give this source another name"));
    }
    Ok(())
}

/// One source's table, read setting by setting; what was never read is an unknown setting.
struct Settings<'a> {
    source: &'a str,
    /// `""`, or `verify.` inside the `verify` table.
    prefix: &'static str,
    table: &'a Table,
    env: Env<'a>,
    /// Every setting looked for, present or not.
    read: BTreeSet<&'static str>,
}

impl<'a> Settings<'a> {
    fn new(source: &'a str, prefix: &'static str, table: &'a Table, env: Env<'a>) -> Self {
        Self {
            source,
            prefix,
            table,
            env,
            read: BTreeSet::new(),
        }
    }

    fn error(&self, key: &str, message: impl Into<String>) -> SourcesError {
        error(
            Some(self.source),
            Some(&format!("{}{key}", self.prefix)),
            message,
        )
    }

    fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.read.insert(key);
        self.table.get(key)
    }

    /// A text setting, with `${VAR}`s replaced.
    fn text(&mut self, key: &'static str) -> Result<Option<String>, SourcesError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) => self.expand(key, s).map(Some),
            Some(_) => Err(self.error(key, "must be a string (in quotes)")),
        }
    }

    fn required(&mut self, key: &'static str, example: &str) -> Result<String, SourcesError> {
        self.text(key)?
            .ok_or_else(|| self.error(key, format!("is missing: add e.g. `{key} = {example}`")))
    }

    /// Replaces each `${VAR}` with the variable's value; an unset one is an error.
    fn expand(&self, key: &str, text: &str) -> Result<String, SourcesError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| self.error(key, "has a `${` without its `}`: write `${VAR}`"))?;
            let var = &after[..end];
            let well_formed = !var.is_empty()
                && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !var.as_bytes()[0].is_ascii_digit();
            if !well_formed {
                return Err(self.error(
                    key,
                    format!("`${{{var}}}` is not a variable name (letters, digits and `_`)"),
                ));
            }
            let value = (self.env)(var).ok_or_else(|| {
                self.error(key, format!("the environment variable `{var}` is not set: export it, or write the value in the file"))
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The secret, from `secret` or `secret_file` (one trailing newline trimmed).
    fn secret(&mut self) -> Result<Option<String>, SourcesError> {
        let inline = self.text("secret")?;
        let file = self.text("secret_file")?;
        let secret = match (inline, file) {
            (Some(_), Some(_)) => {
                return Err(self.error(
                    "secret_file",
                    "give the secret as `secret` or `secret_file`, not both",
                ))
            }
            (Some(s), None) => s,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.error(
                        "secret_file",
                        format!(
                            "`{path}` cannot be read ({e}): check the path and its permissions"
                        ),
                    )
                })?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                text.strip_suffix('\r').unwrap_or(text).to_owned()
            }
            (None, None) => return Ok(None),
        };
        if secret.trim().is_empty() {
            return Err(self.error(
                "secret",
                "is empty: give the secret your provider's dashboard shows",
            ));
        }
        Ok(Some(secret))
    }

    fn required_secret(&mut self, hint: &str) -> Result<String, SourcesError> {
        self.secret()?.ok_or_else(|| {
            self.error("secret", format!("is missing: add `secret = \"${{VAR}}\"` or `secret_file = \"/path\"` with {hint}"))
        })
    }

    fn pointer(&mut self, key: &'static str) -> Result<Option<Pointer>, SourcesError> {
        match self.text(key)? {
            None => Ok(None),
            Some(text) => Pointer::parse(&text)
                .map(Some)
                .map_err(|why| self.error(key, why)),
        }
    }

    fn header_name(
        &mut self,
        key: &'static str,
        example: &str,
    ) -> Result<HeaderName, SourcesError> {
        let text = self.required(key, example)?;
        HeaderName::try_from(text.trim()).map_err(|_| {
            self.error(
                key,
                format!("`{text}` is not a header name: e.g. {example}"),
            )
        })
    }

    /// A sub-table such as `[sources.NAME.verify]`.
    fn table(&mut self, key: &'static str) -> Result<Option<&'a Table>, SourcesError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(t)),
            Some(_) => Err(self.error(
                key,
                format!("must be a table: `[sources.{}.{key}]`", self.source),
            )),
        }
    }

    /// Every setting must have been read: any other is unknown.
    fn finish(&self) -> Result<(), SourcesError> {
        match self.table.keys().find(|k| !self.read.contains(k.as_str())) {
            None => Ok(()),
            Some(unknown) => {
                let known: Vec<&str> = self.read.iter().copied().collect();
                Err(self.error(
                    unknown,
                    format!(
                        "is not a setting here: this table takes {}",
                        known.join(", ")
                    ),
                ))
            }
        }
    }
}

/// Builds one source from its table.
fn build(s: &mut Settings) -> Result<Source, SourcesError> {
    let preset = s.required("preset", "\"generic\"")?;
    let p = Pointer::known;
    let (preset, check, reader): (&'static str, Check, Reader) = match preset.as_str() {
        "plaid" => {
            let client_id = s.required("client_id", "\"${PLAID_CLIENT_ID}\"")?;
            let secret =
                s.required_secret("the Plaid secret of the environment the webhooks come from")?;
            let api_url = s
                .text("api_url")?
                .unwrap_or_else(|| PLAID_API_URL.to_owned());
            let keys = PlaidKeys::new(&api_url, &client_id, &secret)
                .map_err(|why| s.error("api_url", why))?;
            let reader = Reader::new(
                vec![p("/item_id")],
                p("/webhook_type"),
                Some(p("/webhook_code")),
                None,
            );
            ("plaid", Check::Plaid(PlaidCheck::new(keys)), reader)
        }
        "mono" => {
            let secret = s.required_secret("the webhook secret from Mono's dashboard")?;
            let check = Check::HeaderSecret {
                header: HeaderName::from_static("mono-webhook-secret"),
                secret: Key(secret.into_bytes()),
            };
            let record = [
                "/data/account/_id",
                "/data/account/id",
                "/data/account",
                "/data/id",
            ];
            let reader = Reader::new(
                record.map(p).to_vec(),
                p("/event"),
                Some(p("/data/meta/data_status")),
                None,
            );
            ("mono", check, reader)
        }
        "paystack" => {
            let secret = s.required_secret("the secret key from Paystack's dashboard")?;
            let hmac = HmacHeader::new(
                secret.as_bytes(),
                "x-paystack-signature",
                Algorithm::Sha512,
                Encoding::Hex,
                None,
            )
            .map_err(|e| s.error("secret", e.to_string()))?;
            let reader = Reader::new(
                vec![p("/data/customer/customer_code"), p("/data/reference")],
                p("/event"),
                None,
                None,
            );
            ("paystack", Check::Hmac(hmac), reader)
        }
        "standard-webhooks" => {
            let check = standard_webhooks(s)?;
            let record = s.pointer("record")?.into_iter().collect();
            (
                "standard-webhooks",
                check,
                Reader::new(record, p("/type"), None, Some(webhook_id())),
            )
        }
        "generic" => generic(s)?,
        other => {
            return Err(s.error(
                "preset",
                format!("`{other}` is not a preset: use one of {PRESETS}"),
            ));
        }
    };
    Ok(Source {
        name: s.source.to_owned(),
        preset,
        check,
        reader,
    })
}

/// The Standard Webhooks event id: the `webhook-id` header, or `svix-id`.
fn webhook_id() -> EventIdAt {
    EventIdAt::Header(vec![
        HeaderName::from_static("webhook-id"),
        HeaderName::from_static("svix-id"),
    ])
}

/// `secret` (or `secret_file`) or `secrets`, as a Standard Webhooks check.
fn standard_webhooks(s: &mut Settings) -> Result<Check, SourcesError> {
    let single = s.secret()?;
    let several = match s.raw("secrets") {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| match item {
                    Value::String(text) => s.expand("secrets", text),
                    _ => Err(s.error(
                        "secrets",
                        "must be a list of strings: `secrets = [\"whsec_new…\", \"whsec_old…\"]`",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(s.error(
                "secrets",
                "must be a list: `secrets = [\"whsec_new…\", \"whsec_old…\"]`",
            ))
        }
    };
    let (setting, secrets) = match (single, several) {
        (Some(_), Some(_)) => return Err(s.error("secrets", "give `secret` (or `secret_file`) or `secrets`, not both")),
        (Some(one), None) => ("secret", vec![one]),
        (None, Some(list)) => ("secrets", list),
        (None, None) => {
            return Err(s.error("secret", "is missing: add `secret = \"${VAR}\"` with the `whsec_…` signing secret your sender shows, or `secrets = [...]` while rotating"))
        }
    };
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    StandardWebhooks::with_secrets(&refs)
        .map(Check::StandardWebhooks)
        .map_err(|e| s.error(setting, e.to_string()))
}

/// A `generic` source: pointers, and a `[sources.NAME.verify]` table.
fn generic(s: &mut Settings) -> Result<(&'static str, Check, Reader), SourcesError> {
    let callback_type = s.pointer("type")?.ok_or_else(|| {
        s.error(
            "type",
            "is missing: add the JSON pointer to the payload's type, e.g. `type = \"/event\"`",
        )
    })?;
    let code = s.pointer("code")?;
    let record = s.pointer("record")?.into_iter().collect();
    let event_id = match s.text("event_id")? {
        None => None,
        Some(text) => Some(match text.strip_prefix("header:") {
            Some(name) => {
                EventIdAt::Header(vec![HeaderName::try_from(name.trim()).map_err(|_| {
                    s.error(
                        "event_id",
                        format!("`{name}` is not a header name: write `header:X-Event-Id`"),
                    )
                })?])
            }
            None => EventIdAt::Pointer(Pointer::parse(&text).map_err(|why| {
                s.error("event_id", format!("{why}, or `header:NAME` for a header"))
            })?),
        }),
    };
    let verify = s.table("verify")?.ok_or_else(|| {
        s.error(
            "verify",
            format!(
                "is missing: add a `[sources.{}.verify]` table with `scheme` ({SCHEMES})",
                s.source
            ),
        )
    })?;
    let mut v = Settings::new(s.source, "verify.", verify, s.env);
    let scheme = v.required("scheme", "\"hmac\"")?;
    let check = match scheme.as_str() {
        "none" => Check::None,
        "token" => Check::Token(Key(v
            .required_secret("the bearer token the sender sends")?
            .into_bytes())),
        "header-secret" => {
            let header = v.header_name("header", "\"verif-hash\"")?;
            let secret = v.required_secret("the value the sender puts in the header")?;
            Check::HeaderSecret {
                header,
                secret: Key(secret.into_bytes()),
            }
        }
        "hmac" => {
            let header = v.required("header", "\"X-Hub-Signature-256\"")?;
            let algorithm = match v.required("algorithm", "\"sha256\"")?.as_str() {
                "sha256" => Algorithm::Sha256,
                "sha512" => Algorithm::Sha512,
                other => {
                    return Err(v.error(
                        "algorithm",
                        format!("`{other}` is not an HMAC algorithm here: use sha256 or sha512"),
                    ))
                }
            };
            let encoding = match v.text("encoding")?.as_deref().unwrap_or("hex") {
                "hex" => Encoding::Hex,
                "base64" => Encoding::Base64,
                other => {
                    return Err(v.error(
                        "encoding",
                        format!("`{other}` is not an encoding here: use hex or base64"),
                    ))
                }
            };
            let prefix = v.text("prefix")?;
            let secret = v.required_secret("the signing secret shared with the sender")?;
            let hmac = HmacHeader::new(
                secret.as_bytes(),
                &header,
                algorithm,
                encoding,
                prefix.as_deref(),
            )
            .map_err(|e| v.error("header", e.to_string()))?;
            Check::Hmac(hmac)
        }
        "standard-webhooks" => standard_webhooks(&mut v)?,
        other => {
            return Err(v.error(
                "scheme",
                format!("`{other}` is not a verification scheme: use one of {SCHEMES}"),
            ))
        }
    };
    v.finish()?;
    // A Standard Webhooks sender's event id is its `webhook-id`, unless another is configured.
    let event_id = match (&check, event_id) {
        (Check::StandardWebhooks(_), None) => Some(webhook_id()),
        (_, event_id) => event_id,
    };
    Ok((
        "generic",
        check,
        Reader::new(record, callback_type, code, event_id),
    ))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn load(toml: &str) -> Result<Sources, SourcesError> {
        Sources::from_toml_with_env(toml, &|name| {
            (name == "SET").then(|| "value-from-env".to_owned())
        })
    }

    /// The error of `toml`, which must name `source` and `setting`.
    fn fails(toml: &str, source: Option<&str>, setting: Option<&str>) -> String {
        let e = load(toml).expect_err(toml);
        assert_eq!(e.source_name.as_deref(), source, "{e}");
        assert_eq!(e.setting.as_deref(), setting, "{e}");
        let shown = e.to_string();
        if let Some(s) = source {
            assert!(shown.contains(&format!("source `{s}`")), "{shown}");
        }
        if let Some(s) = setting {
            assert!(shown.contains(&format!("setting `{s}`")), "{shown}");
        }
        shown
    }

    #[test]
    fn every_mistake_names_the_source_and_the_setting() {
        let m = fails(
            "[sources.x]\npreset = \"mnoo\"\n",
            Some("x"),
            Some("preset"),
        );
        assert!(m.contains("mono, standard-webhooks"), "{m}");
        fails("[sources.x]\nsecret = \"s\"\n", Some("x"), Some("preset"));
        let m = fails(
            "[sources.x]\npreset = \"mono\"\nsecret = \"s\"\nsecrte = \"s\"\n",
            Some("x"),
            Some("secrte"),
        );
        assert!(
            m.contains("secret_file"),
            "the known settings are listed: {m}"
        );
        fails(
            "[sources.x]\npreset = \"mono\"\n",
            Some("x"),
            Some("secret"),
        );
        let m = fails(
            "[sources.x]\npreset = \"mono\"\nsecret = \"${UNSET_VAR}\"\n",
            Some("x"),
            Some("secret"),
        );
        assert!(m.contains("`UNSET_VAR` is not set"), "{m}");
        fails(
            "[sources.x]\npreset = \"mono\"\nsecret = \"${SET\"\n",
            Some("x"),
            Some("secret"),
        );
        let m = fails(
            "[sources.x]\npreset = \"mono\"\nsecret_file = \"/nonexistent/secret\"\n",
            Some("x"),
            Some("secret_file"),
        );
        assert!(m.contains("/nonexistent/secret"), "{m}");
        fails(
            "[sources.x]\npreset = \"mono\"\nsecret = \"a\"\nsecret_file = \"/etc/hostname\"\n",
            Some("x"),
            Some("secret_file"),
        );
        fails(
            "[sources.x]\npreset = \"mono\"\nsecret = 42\n",
            Some("x"),
            Some("secret"),
        );
        fails(
            "[sources.x]\npreset = \"mono\"\nsecret = \"  \"\n",
            Some("x"),
            Some("secret"),
        );
        fails(
            "[sources.x]\npreset = \"plaid\"\nsecret = \"s\"\n",
            Some("x"),
            Some("client_id"),
        );
        fails("[sources.x]\npreset = \"plaid\"\nclient_id = \"c\"\nsecret = \"s\"\napi_url = \"ftp://plaid\"\n", Some("x"), Some("api_url"));
        let m = fails(
            "[sources.x]\npreset = \"standard-webhooks\"\nsecret = \"whsec_not base64!\"\n",
            Some("x"),
            Some("secret"),
        );
        assert!(!m.contains("not base64!"), "the secret is not shown: {m}");
        fails("[sources.x]\npreset = \"standard-webhooks\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"bad!\"]\n", Some("x"), Some("secrets"));
        fails(
            "[sources.x]\npreset = \"standard-webhooks\"\nsecrets = \"whsec_MfKQ\"\n",
            Some("x"),
            Some("secrets"),
        );
        fails("[sources.x]\npreset = \"standard-webhooks\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nrecord = \"data.id\"\n", Some("x"), Some("record"));
        // generic
        let m = fails("[sources.g]\npreset = \"generic\"\ntype = \"event\"\n[sources.g.verify]\nscheme = \"none\"\n", Some("g"), Some("type"));
        assert!(m.contains("`/event`"), "{m}");
        fails(
            "[sources.g]\npreset = \"generic\"\n[sources.g.verify]\nscheme = \"none\"\n",
            Some("g"),
            Some("type"),
        );
        fails(
            "[sources.g]\npreset = \"generic\"\ntype = \"/t\"\n",
            Some("g"),
            Some("verify"),
        );
        fails(
            "[sources.g]\npreset = \"generic\"\ntype = \"/t\"\nverify = \"none\"\n",
            Some("g"),
            Some("verify"),
        );
        fails("[sources.g]\npreset = \"generic\"\ntype = \"/t\"\nevent_id = \"header:bad header\"\n[sources.g.verify]\nscheme = \"none\"\n", Some("g"), Some("event_id"));
        fails("[sources.g]\npreset = \"generic\"\ntype = \"/t\"\nevent_id = \"id\"\n[sources.g.verify]\nscheme = \"none\"\n", Some("g"), Some("event_id"));
        fails("[sources.g]\npreset = \"generic\"\ntype = \"/t\"\n[sources.g.verify]\nscheme = \"jwt\"\n", Some("g"), Some("verify.scheme"));
        fails("[sources.g]\npreset = \"generic\"\ntype = \"/t\"\n[sources.g.verify]\nscheme = \"hmac\"\nalgorithm = \"sha256\"\nsecret = \"s\"\n", Some("g"), Some("verify.header"));
        fails("[sources.g]\npreset = \"generic\"\ntype = \"/t\"\n[sources.g.verify]\nscheme = \"hmac\"\nheader = \"x-sig\"\nalgorithm = \"md5\"\nsecret = \"s\"\n", Some("g"), Some("verify.algorithm"));
        fails("[sources.g]\npreset = \"generic\"\ntype = \"/t\"\n[sources.g.verify]\nscheme = \"hmac\"\nheader = \"x-sig\"\nalgorithm = \"sha256\"\nencoding = \"hexa\"\nsecret = \"s\"\n", Some("g"), Some("verify.encoding"));
        fails("[sources.g]\npreset = \"generic\"\ntype = \"/t\"\n[sources.g.verify]\nscheme = \"hmac\"\nheader = \"bad header\"\nalgorithm = \"sha256\"\nsecret = \"s\"\n", Some("g"), Some("verify.header"));
        fails("[sources.g]\npreset = \"generic\"\ntype = \"/t\"\n[sources.g.verify]\nscheme = \"token\"\n", Some("g"), Some("verify.secret"));
        fails("[sources.g]\npreset = \"generic\"\ntype = \"/t\"\n[sources.g.verify]\nscheme = \"token\"\nsecret = \"s\"\nheader = \"x\"\n", Some("g"), Some("verify.header"));
        fails("[sources.g]\npreset = \"generic\"\ntype = \"/t\"\n[sources.g.verify]\nscheme = \"none\"\nsecret = \"s\"\n", Some("g"), Some("verify.secret"));
    }

    #[test]
    fn names_and_the_file_itself_are_checked() {
        fails(
            "[sources.okra]\npreset = \"mono\"\nsecret = \"s\"\n",
            Some("okra"),
            None,
        );
        fails(
            "[sources.Mono]\npreset = \"mono\"\nsecret = \"s\"\n",
            Some("Mono"),
            None,
        );
        let long = "a".repeat(33);
        fails(
            &format!("[sources.{long}]\npreset = \"mono\"\nsecret = \"s\"\n"),
            Some(&*long),
            None,
        );
        fails("[sources]\nx = 1\n", Some("x"), None);
        fails("", None, None);
        fails("[source.x]\npreset = \"mono\"\n", None, None);
        let m = fails("[sources.x\n", None, None);
        assert!(m.contains("TOML"), "{m}");
        let e = Sources::load("/nonexistent/sources.toml").unwrap_err();
        assert_eq!(
            e.file.as_deref(),
            Some(Path::new("/nonexistent/sources.toml"))
        );
        assert!(e.to_string().contains("--sources"), "{e}");
    }

    #[test]
    fn values_come_from_the_environment_and_secret_files() {
        let set = load(
            "[sources.a-1]\npreset = \"plaid\"\nclient_id = \"id-${SET}\"\nsecret = \"${SET}\"\napi_url = \"http://127.0.0.1:9\"\n",
        )
        .unwrap();
        assert_eq!(set.names().collect::<Vec<_>>(), ["a-1"]);
        assert!(format!("{:?}", set.get("a-1").unwrap()).contains("id-value-from-env"));

        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"tok-from-file\n").unwrap();
        let toml = format!(
            "[sources.t]\npreset = \"generic\"\ntype = \"/t\"\n[sources.t.verify]\nscheme = \"token\"\nsecret_file = \"{}\"\n",
            file.path().display()
        );
        let set = load(&toml).unwrap();
        let signed = set.get("t").unwrap().sign(b"{}").unwrap();
        assert_eq!(
            signed,
            vec![(
                "authorization".to_owned(),
                "Bearer tok-from-file".to_owned()
            )]
        );
        // One trailing newline is trimmed, not more.
        let mut two = tempfile::NamedTempFile::new().unwrap();
        two.write_all(b"tok\n\n").unwrap();
        let set = load(&toml.replace(
            &file.path().display().to_string(),
            &two.path().display().to_string(),
        ))
        .unwrap();
        assert_eq!(
            set.get("t").unwrap().sign(b"{}").unwrap()[0].1,
            "Bearer tok\n"
        );
    }

    #[test]
    fn a_sources_file_loads_from_disk() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"[sources.mono]\npreset = \"mono\"\nsecret = \"s\"\n[sources.paystack]\npreset = \"paystack\"\nsecret = \"s\"\n").unwrap();
        let set = Sources::load(file.path()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.get("paystack").unwrap().preset(), "paystack");
        assert!(set.get("okra").is_none());
    }
}
