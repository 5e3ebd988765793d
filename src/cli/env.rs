//! Command-line errors that say where a value came from: clap names the flag
//! (`--lease <LEASE>`), but a value read from the environment was written in its variable,
//! and that is what the user has to fix — a bad value, or two settings that cannot go together.

use std::ffi::OsString;

use clap::{
    error::{ContextKind, ContextValue, ErrorKind},
    Arg, Command,
};

/// Reports a command-line error as clap would and exits; a refused value or a conflicting
/// setting that came from an environment variable is reported with that variable
/// (`(from the environment variable OKRA_LEASE)`).
pub fn exit(err: clap::Error, cmd: &Command) -> ! {
    let args: Vec<OsString> = std::env::args_os().collect();
    let sources = env_sources(&err, cmd, &args);
    if sources.is_empty() {
        err.exit()
    }
    eprint!("{}", name_variables(&err.render().to_string(), &sources));
    std::process::exit(err.exit_code())
}

/// The flags of `err` whose value came from the environment, each with its variable (the flag
/// as clap names it: `--lease <LEASE>`): a refused value's flag when its variable holds that
/// value, and each side of a conflict that is not on the command line but in its variable.
fn env_sources(err: &clap::Error, cmd: &Command, args: &[OsString]) -> Vec<(String, String)> {
    // The variable `flag`'s value came from and that value, if it is not on the command line.
    let from_env = |flag: &str| -> Option<(String, String)> {
        let long = flag.split_whitespace().next()?.strip_prefix("--")?;
        let on_command_line = args.iter().any(|a| {
            a.to_str()
                .and_then(|a| a.strip_prefix("--"))
                .is_some_and(|a| a == long || a.starts_with(&format!("{long}=")))
        });
        if on_command_line {
            return None;
        }
        let env = find_arg(cmd, long)?.get_env()?;
        let value = std::env::var_os(env)?.to_str()?.to_owned();
        Some((env.to_string_lossy().into_owned(), value))
    };
    let Some(ContextValue::String(flag)) = err.get(ContextKind::InvalidArg) else {
        return Vec::new();
    };
    match err.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let Some(ContextValue::String(refused)) = err.get(ContextKind::InvalidValue) else {
                return Vec::new();
            };
            from_env(flag)
                .filter(|(_, value)| value == refused)
                .map(|(variable, _)| (flag.clone(), variable))
                .into_iter()
                .collect()
        }
        ErrorKind::ArgumentConflict => {
            let others = match err.get(ContextKind::PriorArg) {
                Some(ContextValue::String(other)) => vec![other.clone()],
                Some(ContextValue::Strings(others)) => others.clone(),
                _ => Vec::new(),
            };
            std::iter::once(flag.clone())
                .chain(others)
                .filter_map(|f| from_env(&f).map(|(variable, _)| (f, variable)))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The argument `--long` of `cmd` or of any of its subcommands.
fn find_arg<'a>(cmd: &'a Command, long: &str) -> Option<&'a Arg> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .or_else(|| cmd.get_subcommands().find_map(|sub| find_arg(sub, long)))
}

/// clap's rendered error with `(from the environment variable VARIABLE)` after each flag of
/// `sources` it names.
fn name_variables(rendered: &str, sources: &[(String, String)]) -> String {
    sources
        .iter()
        .fold(rendered.to_owned(), |text, (flag, variable)| {
            let quoted = format!("'{flag}'");
            text.replacen(
                &quoted,
                &format!("{quoted} (from the environment variable {variable})"),
                1,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    /// Variables no other test reads, so setting them cannot disturb them.
    const VARIABLE: &str = "OKRA_CLI_ENV_UNIT_TEST_LEASE";
    const NEW: &str = "OKRA_CLI_ENV_UNIT_TEST_DELAY";
    const OLD: &str = "OKRA_CLI_ENV_UNIT_TEST_DELAY_MS";

    /// `serve` with `--lease`, or (`conflict`) with `--delay` and `--delay-ms` that cannot
    /// go together; each test has its own variables, as tests run in parallel.
    fn command(conflict: bool) -> Command {
        let serve = if conflict {
            Command::new("serve")
                .arg(Arg::new("delay").long("delay").env(NEW))
                .arg(
                    Arg::new("delay_ms")
                        .long("delay-ms")
                        .env(OLD)
                        .conflicts_with("delay"),
                )
        } else {
            Command::new("serve").arg(
                Arg::new("lease")
                    .long("lease")
                    .env(VARIABLE)
                    .value_parser(clap::value_parser!(u32)),
            )
        };
        Command::new("okra-callbacks").subcommand(serve)
    }

    /// The message for `args` (the variables set as the caller left them), if it names a
    /// variable.
    fn message(conflict: bool, args: &[&str]) -> Option<String> {
        let err = command(conflict)
            .try_get_matches_from(args)
            .expect_err("refused");
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let sources = env_sources(&err, &command(conflict), &args);
        (!sources.is_empty()).then(|| name_variables(&err.render().to_string(), &sources))
    }

    #[test]
    fn a_bad_value_names_its_variable_unless_it_came_from_the_command_line() {
        std::env::set_var(VARIABLE, "ten");
        let from_env = message(false, &["okra-callbacks", "serve"]).expect("names the variable");
        assert!(
            from_env.contains(&format!(
                "'--lease <lease>' (from the environment variable {VARIABLE})"
            )),
            "{from_env}"
        );
        assert!(from_env.contains("'ten'"), "{from_env}");
        assert_eq!(
            message(false, &["okra-callbacks", "serve", "--lease", "ten"]),
            None
        );
        assert_eq!(
            message(false, &["okra-callbacks", "serve", "--lease=ten"]),
            None
        );
    }

    #[test]
    fn a_conflict_names_the_variables_its_settings_came_from() {
        std::env::set_var(OLD, "250");
        let err = message(true, &["okra-callbacks", "serve", "--delay", "1s"]).expect("a conflict");
        assert!(
            err.contains(&format!(
                "'--delay-ms <delay_ms>' (from the environment variable {OLD})"
            )),
            "{err}"
        );
        assert!(
            !err.contains(&format!("{NEW})")),
            "--delay came from the command line: {err}"
        );
        std::env::set_var(NEW, "1s");
        let err = message(true, &["okra-callbacks", "serve"]).expect("a conflict");
        assert!(
            err.contains(&format!("{NEW})")) && err.contains(&format!("{OLD})")),
            "{err}"
        );
        std::env::remove_var(NEW);
        std::env::remove_var(OLD);
    }
}
