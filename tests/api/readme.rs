//! The README and `docker-compose.yml` against the code, so neither can drift from it: every
//! flag row states a flag `okra-callbacks serve --help` lists, with its variable and default;
//! every variable it names is read; the compose file's stated defaults are the binary's; the
//! default log filter is the one the code uses.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
};

const README: &str = include_str!("../../README.md");
const COMPOSE: &str = include_str!("../../docker-compose.yml");

/// What `--help` says of one flag.
#[derive(Debug, Default)]
struct HelpFlag {
    env: Option<String>,
    default: Option<String>,
    text: String,
}

impl HelpFlag {
    /// The default `--help` states: clap's `[default: …]`, else a `Default: …` in the text (a
    /// default computed at start-up, such as `--lease`'s).
    fn stated_default(&self) -> Option<String> {
        self.default.clone().or_else(|| {
            let (_, rest) = self.text.split_once("Default: ")?;
            let value = rest.split_whitespace().next()?;
            Some(value.trim_end_matches([',', '.', ';', ')']).to_owned())
        })
    }
}

/// `okra-callbacks ARGS` (a `--help`), with no variable of the test's environment set.
fn help(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_okra-callbacks"))
        .env_clear()
        .args(args)
        .output()
        .expect("run okra-callbacks --help");
    assert!(output.status.success(), "okra-callbacks {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

/// The flags of a clap long help, by long name (`--listen`).
fn help_flags(help: &str) -> BTreeMap<String, HelpFlag> {
    let mut flags: BTreeMap<String, HelpFlag> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with('-') && indent <= 6 {
            let name = trimmed
                .split([' ', ','])
                .find(|w| w.starts_with("--"))
                .expect("a long flag")
                .to_owned();
            flags.insert(name.clone(), HelpFlag::default());
            current = Some(name);
        } else if indent == 0 {
            current = None; // a heading such as `Store:`
        } else if let Some(flag) = current.as_ref().and_then(|n| flags.get_mut(n)) {
            if let Some(env) = trimmed.strip_prefix("[env: ") {
                flag.env = Some(env.trim_end_matches(']').split('=').next().unwrap().into());
            } else if let Some(default) = trimmed.strip_prefix("[default: ") {
                flag.default = Some(default.trim_end_matches(']').into());
            } else {
                flag.text.push_str(trimmed);
                flag.text.push(' ');
            }
        }
    }
    flags
}

/// The backticked words of a piece of Markdown.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// One row of a README table headed `| flag | environment | default | …`.
#[derive(Debug)]
struct FlagRow {
    line: usize,
    flags: Vec<String>,
    envs: Vec<String>,
    /// What each flag's default is said to be (`None`: "none", "off", "anywhere", "keep all").
    defaults: Vec<Option<String>>,
}

fn flag_rows(readme: &str) -> Vec<FlagRow> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for (n, line) in readme.lines().enumerate() {
        let line_no = n + 1;
        if line.starts_with("| flag | environment | default |") {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (flag_cell, env_cell, default_cell) = (cells[1], cells[2], cells[3]);
        let flags: Vec<String> = backticked(flag_cell)
            .into_iter()
            .filter(|w| w.starts_with("--"))
            .map(String::from)
            .collect();
        let envs: Vec<String> = backticked(env_cell).into_iter().map(String::from).collect();
        let parts: Vec<&str> = default_cell.split(", ").collect();
        let defaults = if flags.len() > 1 && parts.len() == flags.len() {
            parts.iter().map(|p| default_of(p, line_no)).collect()
        } else {
            vec![default_of(default_cell, line_no); flags.len().max(1)]
        };
        rows.push(FlagRow {
            line: line_no,
            flags,
            envs,
            defaults,
        });
    }
    rows
}

/// A default cell's value: its first backticked word, or `None` for a setting that is off
/// unless given.
fn default_of(cell: &str, line: usize) -> Option<String> {
    if let Some(value) = backticked(cell).first() {
        return Some((*value).to_owned());
    }
    let words = cell.trim();
    assert!(
        ["none", "off", "anywhere", "keep all"].contains(&words),
        "README line {line}: write the default `{words}` in backticks, as --help prints it, or say none/off"
    );
    None
}

#[test]
fn every_flag_row_names_a_flag_with_its_variable_and_default() {
    let flags = help_flags(&help(&["serve", "--help"]));
    assert!(
        flags.contains_key("--listen") && flags.contains_key("--database-url"),
        "the help parses: {flags:?}"
    );
    let rows = flag_rows(README);
    assert!(rows.len() > 40, "the README's flag tables are found");
    for row in &rows {
        let line = row.line;
        if row.flags.is_empty() {
            // A variable without a flag (HOSTNAME): the code reads it.
            for env in &row.envs {
                assert!(
                    source_mentions(&["src"], env),
                    "README line {line}: {env} is read nowhere in src/"
                );
            }
            continue;
        }
        for (i, name) in row.flags.iter().enumerate() {
            let flag = flags.get(name).unwrap_or_else(|| {
                panic!("README line {line}: {name} is not a flag of `okra-callbacks serve`")
            });
            let env = if row.envs.len() == row.flags.len() {
                row.envs.get(i)
            } else {
                row.envs.first()
            };
            assert_eq!(
                flag.env.as_ref(),
                env,
                "README line {line}: the variable of {name}"
            );
            assert_eq!(
                flag.stated_default(),
                row.defaults[i],
                "README line {line}: the default of {name} (as --help states it)"
            );
        }
    }
}

/// The variables every subcommand reads.
fn binary_variables() -> BTreeSet<String> {
    [
        &["serve", "--help"][..],
        &["send", "--help"],
        &["replay", "--help"],
        &["healthcheck", "--help"],
    ]
    .iter()
    .flat_map(|args| help_flags(&help(args)).into_values())
    .filter_map(|f| f.env)
    .collect()
}

/// Whether any file under `dirs` (relative to the crate) holds `needle`.
fn source_mentions(dirs: &[&str], needle: &str) -> bool {
    fn walk(dir: &Path, needle: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, needle)
            } else {
                std::fs::read_to_string(&path).is_ok_and(|text| text.contains(needle))
            }
        })
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    dirs.iter().any(|dir| walk(&root.join(dir), needle))
}

/// The `OKRA_…` words of a text (a bare prefix such as `OKRA_TEST_*` is not a variable).
fn okra_variables(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| w.starts_with("OKRA_") && !w.ends_with('_'))
        .collect()
}

#[test]
fn every_variable_the_readme_names_is_read() {
    let read = binary_variables();
    assert!(read.contains("OKRA_LISTEN") && read.contains("DATABASE_URL"));
    for var in okra_variables(README) {
        if var.starts_with("OKRA_TEST_") || var.starts_with("OKRA_BENCH_") {
            assert!(
                source_mentions(&["tests", "benches", "scripts", ".ci"], var),
                "the README names {var}, which no test, benchmark or script reads"
            );
        } else {
            assert!(
                read.contains(var),
                "the README names {var}, which no okra-callbacks command reads"
            );
        }
    }
}

#[test]
fn the_readme_states_the_default_log_filter_the_code_uses() {
    let stated: Vec<&str> = backticked(README)
        .into_iter()
        .filter(|w| w.starts_with("warn,"))
        .collect();
    assert!(!stated.is_empty(), "the README states the default filter");
    for filter in stated {
        assert_eq!(filter, okra_callbacks::telemetry::DEFAULT_LOG_FILTER);
    }
}

/// docker-compose.yml sets only variables the binary reads, and each default its comments
/// state (`(default: 10s …)` above a variable) is the binary's.
#[test]
fn the_compose_file_agrees_with_the_binary() {
    let flags = help_flags(&help(&["serve", "--help"]));
    let by_env: HashMap<&str, &HelpFlag> = flags
        .values()
        .filter_map(|f| f.env.as_deref().map(|e| (e, f)))
        .collect();
    let lines: Vec<&str> = COMPOSE.lines().collect();
    let key_of = |line: &str| -> Option<String> {
        let line = line.trim().trim_start_matches('#').trim();
        let (key, _) = line.split_once(':')?;
        (key == "DATABASE_URL" || key.starts_with("OKRA_")).then(|| key.to_owned())
    };
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        if let Some(key) = key_of(line) {
            assert!(
                by_env.contains_key(key.as_str()),
                "docker-compose.yml line {}: {key} is not a variable of `okra-callbacks serve`",
                i + 1
            );
        }
        let Some((_, said)) = line.split_once("default: ") else {
            continue;
        };
        assert!(line.trim_start().starts_with('#'), "a comment: {line}");
        let said = said
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches([',', ')', '.']);
        let key = lines[i + 1..]
            .iter()
            .find_map(|l| key_of(l))
            .unwrap_or_else(|| panic!("docker-compose.yml line {}: default of what?", i + 1));
        let actual = by_env[key.as_str()].stated_default();
        assert_eq!(
            actual.as_deref(),
            Some(said),
            "docker-compose.yml line {}: the default of {key}",
            i + 1
        );
        checked += 1;
    }
    assert!(checked >= 1, "the lease's default is stated and checked");
}

/// Every metric the README names (`okra_…`, a histogram's `_bucket` as its histogram), and every
/// label it selects on (`{handler="forward"`, `outcome="error"`), is on a fresh receiver's
/// `/metrics`, before any callback.
#[tokio::test]
async fn every_metric_and_label_the_readme_names_is_exported_from_the_start() {
    // Words of the README that are not metrics: the crate, the secrets' files, a table.
    let not_metrics = [
        "okra_callbacks",
        "okra_admin_token",
        "okra_callback_token",
        "okra_record_queue",
    ];
    let (text, exported) = crate::support::fresh_metrics().await;
    let words = README.split(|c: char| !(c.is_ascii_lowercase() || c == '_'));
    let named: BTreeSet<&str> = words
        .filter(|w| w.starts_with("okra_") && !not_metrics.contains(w))
        .map(|w| w.trim_end_matches("_bucket"))
        .collect();
    assert!(
        named.len() >= 20,
        "the README's metrics are found: {named:?}"
    );
    for name in &named {
        let shown = exported.contains(*name) || exported.contains(&format!("{name}_count"));
        assert!(
            shown,
            "{name} (in the README) is not on a fresh /metrics:\n{text}"
        );
    }
    let labels: BTreeSet<&str> = README
        .split(['{', ','])
        .skip(1)
        .filter_map(|s| s.split_once('=').map(|(l, _)| l.trim()))
        .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .filter(|l| README.contains(&format!("{{{l}=")) || README.contains(&format!("{l}=\"")))
        .collect();
    assert!(
        labels.contains("handler") && labels.contains("reason"),
        "{labels:?}"
    );
    for label in &labels {
        assert!(
            text.contains(&format!("{{{label}=")) || text.contains(&format!(",{label}=")),
            "the label {label} (in the README) is on no series of a fresh /metrics:\n{text}"
        );
    }
}
