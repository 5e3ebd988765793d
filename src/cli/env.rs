//! Command-line errors that say where a bad value came from: clap names the flag
//! (`--lease <LEASE>`), but a value read from the environment was written in its variable,
//! and that is what the user has to fix.

use std::ffi::OsString;

use clap::{
    error::{ContextKind, ContextValue, ErrorKind},
    Arg, Command,
};

/// Reports a command-line error as clap would and exits; a bad value that came from an
/// environment variable is reported with that variable (`(from OKRA_LEASE)`).
pub fn exit(err: clap::Error, cmd: &Command) -> ! {
    let args: Vec<OsString> = std::env::args_os().collect();
    let Some(variable) = bad_value_variable(&err, cmd, &args) else {
        err.exit()
    };
    eprint!(
        "{}",
        name_variable(&err.render().to_string(), &err, &variable)
    );
    std::process::exit(err.exit_code())
}

/// The variable a refused value came from: the flag's `env`, when the flag is not on the
/// command line and the variable holds the refused value.
fn bad_value_variable(err: &clap::Error, cmd: &Command, args: &[OsString]) -> Option<String> {
    if !matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let (Some(ContextValue::String(flag)), Some(ContextValue::String(value))) = (
        err.get(ContextKind::InvalidArg),
        err.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
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
    (std::env::var_os(env)?.to_str()? == value).then(|| env.to_string_lossy().into_owned())
}

/// The argument `--long` of `cmd` or of any of its subcommands.
fn find_arg<'a>(cmd: &'a Command, long: &str) -> Option<&'a Arg> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .or_else(|| cmd.get_subcommands().find_map(|sub| find_arg(sub, long)))
}

/// clap's rendered error with `(from VARIABLE)` after the flag it names.
fn name_variable(rendered: &str, err: &clap::Error, variable: &str) -> String {
    let Some(ContextValue::String(flag)) = err.get(ContextKind::InvalidArg) else {
        return rendered.to_owned();
    };
    let quoted = format!("'{flag}'");
    rendered.replacen(
        &quoted,
        &format!("{quoted} (from the environment variable {variable})"),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    /// A variable no other test reads, so setting it cannot disturb them.
    const VARIABLE: &str = "OKRA_CLI_ENV_UNIT_TEST_LEASE";

    fn command() -> Command {
        Command::new("okra-callbacks").subcommand(
            Command::new("serve").arg(
                Arg::new("lease")
                    .long("lease")
                    .env(VARIABLE)
                    .value_parser(clap::value_parser!(u32)),
            ),
        )
    }

    /// The message for `args` with the variable holding `ten`, if it names the variable.
    fn message(args: &[&str]) -> Option<String> {
        std::env::set_var(VARIABLE, "ten");
        let err = command().try_get_matches_from(args).expect_err("refused");
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let variable = bad_value_variable(&err, &command(), &args)?;
        Some(name_variable(&err.render().to_string(), &err, &variable))
    }

    #[test]
    fn a_bad_value_names_its_variable_unless_it_came_from_the_command_line() {
        let from_env = message(&["okra-callbacks", "serve"]).expect("names the variable");
        assert!(
            from_env.contains(&format!(
                "'--lease <lease>' (from the environment variable {VARIABLE})"
            )),
            "{from_env}"
        );
        assert!(from_env.contains("'ten'"), "{from_env}");
        assert_eq!(
            message(&["okra-callbacks", "serve", "--lease", "ten"]),
            None
        );
        assert_eq!(message(&["okra-callbacks", "serve", "--lease=ten"]), None);
    }
}
