//! The samples `send` ships with: Okra's (`samples/*.json`) and each provider's
//! (`samples/<folder>/*.json`), found by name or by type and code, and listed by `send --list`.

use std::sync::{Arc, OnceLock};

use axum::http::HeaderMap;
use bytes::Bytes;

use okra_callbacks::{
    source::{Source, Sources},
    Envelope,
};

/// `(name, body)` pairs of the files `samples/{dir}/{name}.json`, embedded in the binary.
macro_rules! files {
    ($dir:literal: $($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("../../samples/", $dir, $name, ".json")))),+]
    };
}

/// One folder of built-in samples: Okra's, or one provider's.
#[derive(Debug)]
pub struct Folder {
    /// What `--list` and the errors call it: `okra`, `plaid`, `mono`, `paystack`, `stitch`.
    pub name: &'static str,
    /// The preset of the sources these samples are for; `None` for Okra's.
    pub preset: Option<&'static str>,
    /// Its files, by name without `.json`.
    files: &'static [(&'static str, &'static str)],
}

/// Every folder, Okra's first.
pub const FOLDERS: &[Folder] = &[
    Folder {
        name: "okra",
        preset: None,
        files: files!("": "transactions_initial", "transactions_full", "transactions_periodic",
            "transactions_deleted", "record_error", "record_webhook_update_acknowledged",
            "income_ready_misspelled", "identity_ready", "identity_is_ready", "balance_ready",
            "balance_success", "auth_success", "accounts_success"),
    },
    Folder {
        name: "plaid",
        preset: Some("plaid"),
        files: files!("plaid/": "item_error", "item_login_repaired", "item_new_accounts_available",
            "item_pending_disconnect", "item_pending_expiration", "item_user_account_revoked",
            "item_user_permission_revoked", "item_webhook_update_acknowledged",
            "transactions_default_update", "transactions_historical_update",
            "transactions_initial_update", "transactions_recurring_update", "transactions_removed",
            "transactions_sync_updates_available"),
    },
    Folder {
        name: "mono",
        preset: Some("mono"),
        files: files!("mono/": "account_connected", "account_updated", "reauthorisation_required"),
    },
    Folder {
        name: "paystack",
        preset: Some("paystack"),
        files: files!("paystack/": "charge_success", "transfer_success"),
    },
    Folder {
        name: "stitch",
        preset: Some("standard-webhooks"),
        files: files!("stitch/": "payment", "refund"),
    },
];

/// Okra's samples.
pub fn okra() -> &'static Folder {
    &FOLDERS[0]
}

/// A built-in sample with the type and code it carries.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The file's name, without `.json`.
    pub name: &'static str,
    /// Its callback type, e.g. `TRANSACTIONS` or `mono.events.account_updated`.
    pub callback_type: String,
    /// Its callback code, if it has one.
    pub callback_code: Option<String>,
    /// The JSON as its sender posts it.
    pub body: &'static str,
}

impl Folder {
    /// The samples for sources of `preset`, if any ship (none for `generic`).
    pub fn for_preset(preset: &str) -> Option<&'static Folder> {
        FOLDERS.iter().find(|f| f.preset == Some(preset))
    }

    /// Every sample of the folder, each read for its type and code as the receiver reads it.
    pub fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        self.files.iter().map(move |&(name, body)| {
            let (callback_type, callback_code) = self.type_and_code(body);
            Sample {
                name,
                callback_type,
                callback_code,
                body,
            }
        })
    }

    /// The sample called `name`, if the folder has one.
    pub fn by_name(&self, name: &str) -> Option<&'static str> {
        self.files.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
    }

    /// The names of its samples, for error messages.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.files.iter().map(|(n, _)| *n).collect();
        names.join(", ")
    }

    /// The first sample of this type and (when given) code, compared ignoring case; else an
    /// error listing what there is.
    pub fn by_type(&self, callback_type: &str, code: Option<&str>) -> Result<&'static str, String> {
        self.samples()
            .find(|s| {
                s.callback_type.eq_ignore_ascii_case(callback_type)
                    && code.is_none_or(|c| {
                        s.callback_code
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case(c))
                    })
            })
            .map(|s| s.body)
            .ok_or_else(|| {
                let wanted = type_and_code(callback_type, code);
                let known: Vec<String> = self
                    .samples()
                    .map(|s| type_and_code(&s.callback_type, s.callback_code.as_deref()))
                    .collect();
                let whose = match self.preset {
                    None => String::new(),
                    Some(_) => format!(" of {}", self.name),
                };
                format!(
                    "no built-in sample{whose} for {wanted}: choose one of: {}",
                    known.join(", ")
                )
            })
    }

    /// A sample's type and code, read by Okra's model or by the provider's preset.
    fn type_and_code(&self, body: &'static str) -> (String, Option<String>) {
        match self.preset {
            None => {
                let env = Envelope::parse(body.as_bytes().to_vec()).expect("Okra's samples parse");
                (
                    env.callback_type().to_owned(),
                    env.callback_code().map(str::to_owned),
                )
            }
            Some(preset) => {
                let event = reader(preset)
                    .read(&HeaderMap::new(), &Bytes::from_static(body.as_bytes()))
                    .expect("the providers' samples read as their preset reads them");
                (event.callback_type, event.callback_code)
            }
        }
    }
}

/// A source of `preset` whose reader describes the samples. Its secrets are placeholders,
/// never used to sign or check anything: only its reader is asked.
fn reader(preset: &str) -> Arc<Source> {
    static READERS: OnceLock<Sources> = OnceLock::new();
    let readers = READERS.get_or_init(|| {
        Sources::from_toml_with_env(
            r#"
[sources.plaid]
preset = "plaid"
client_id = "samples"
secret = "samples"
[sources.mono]
preset = "mono"
secret = "samples"
[sources.paystack]
preset = "paystack"
secret = "samples"
[sources.standard-webhooks]
preset = "standard-webhooks"
secret = "whsec_c2FtcGxlcw=="
"#,
            &|_| None,
        )
        .expect("the samples' readers are configured")
    });
    readers
        .get(preset)
        .unwrap_or_else(|| panic!("no reader for the samples of preset `{preset}`"))
        .clone()
}

/// `TYPE CODE`, or `TYPE` alone when there is no code.
fn type_and_code(callback_type: &str, code: Option<&str>) -> String {
    match code {
        Some(code) => format!("{callback_type} {code}"),
        None => callback_type.to_owned(),
    }
}

/// What `send --list` prints: each folder's samples with their type and code, Okra's first.
pub fn listing() -> String {
    let mut out = String::new();
    for folder in FOLDERS {
        let how = match folder.preset {
            None => "send NAME, or send --type TYPE --code CODE".to_owned(),
            Some("plaid") => {
                "preset plaid: send cannot sign as Plaid (only Plaid holds its key); fire them from Plaid's sandbox".to_owned()
            }
            Some(preset) => format!("preset {preset}: send --source SOURCE NAME --sources FILE"),
        };
        out.push_str(&format!("{} ({how})\n", folder.name));
        for sample in folder.samples() {
            let what = type_and_code(&sample.callback_type, sample.callback_code.as_deref());
            out.push_str(&format!("  {:<36} {what}\n", sample.name));
        }
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn okra_s_samples_are_found_by_type_and_code() {
        let body = okra()
            .by_type("transactions", Some("periodic_transactions"))
            .unwrap();
        assert!(body.contains("\"new_transactions\":3"));
        let body = okra()
            .by_type("IDENTITY", Some("IDENTITY_IS_READY"))
            .unwrap();
        assert!(body.contains("\"identity\""));
        let err = okra().by_type("LOANS", None).unwrap_err();
        assert!(
            err.starts_with("no built-in sample for LOANS: choose one of:"),
            "{err}"
        );
        assert!(err.contains("TRANSACTIONS PERIODIC_TRANSACTIONS"), "{err}");
    }

    #[test]
    fn every_sample_is_read_for_its_type_and_code() {
        let all: Vec<Sample> = okra().samples().collect();
        assert_eq!(all.len(), 13);
        let find = |name: &str| all.iter().find(|s| s.name == name).unwrap();
        let income = find("income_ready_misspelled");
        assert_eq!(income.callback_type, "INCOME");
        assert_eq!(income.callback_code.as_deref(), Some("PDOCUT_IS_READY"));
        assert_eq!(find("accounts_success").callback_type, "ACCOUNTS");
        assert!(all.iter().all(|s| s.callback_code.is_some()));

        let mono = Folder::for_preset("mono").unwrap();
        let updated = mono
            .samples()
            .find(|s| s.name == "account_updated")
            .unwrap();
        assert_eq!(updated.callback_type, "mono.events.account_updated");
        assert_eq!(updated.callback_code.as_deref(), Some("AVAILABLE"));
        let stitch = Folder::for_preset("standard-webhooks").unwrap();
        assert_eq!(stitch.name, "stitch");
        assert_eq!(
            stitch
                .samples()
                .map(|s| s.callback_type)
                .collect::<Vec<_>>(),
            ["payment", "refund"]
        );
        assert!(Folder::for_preset("generic").is_none());
        let err = mono.by_type("mono.events.nope", None).unwrap_err();
        assert!(err.contains("of mono for mono.events.nope"), "{err}");
        assert!(
            err.contains("mono.events.account_updated AVAILABLE"),
            "{err}"
        );
    }

    /// Every file under `samples/` is embedded, in the folder of its directory.
    #[test]
    fn every_sample_file_ships() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        for folder in FOLDERS {
            let dir = match folder.preset {
                None => root.clone(),
                Some(_) => root.join(folder.name),
            };
            let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| {
                    let path = e.ok()?.path();
                    let stem = path.file_stem()?.to_str()?.to_owned();
                    (path.extension()? == "json").then_some(stem)
                })
                .collect();
            on_disk.sort();
            let mut shipped: Vec<&str> = folder.files.iter().map(|(n, _)| *n).collect();
            shipped.sort();
            assert_eq!(on_disk, shipped, "{}", dir.display());
            for (name, body) in folder.files {
                let file = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
                assert_eq!(&file, body, "{name}");
            }
        }
    }

    #[test]
    fn the_listing_names_every_folder_and_sample_with_its_type() {
        let listing = listing();
        assert!(listing.starts_with("okra ("), "{listing}");
        for folder in FOLDERS {
            assert!(listing.contains(&format!("\n{} (", folder.name)) || folder.name == "okra");
            for sample in folder.samples() {
                let line = listing
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("{} ", sample.name)))
                    .unwrap_or_else(|| panic!("{} listed", sample.name));
                assert!(line.contains(&sample.callback_type), "{line}");
            }
        }
    }
}
