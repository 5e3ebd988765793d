//! Standard output for the client commands. A reader that stops early (`send --list | head -1`)
//! closes the pipe: that is the end of the command, not a failure, so it exits 0 instead of
//! panicking as `println!` would.

use std::io::{ErrorKind, Write};

/// Writes `text` and a newline to standard output. A closed pipe ends the process with exit
/// code 0 (the reader has what it wanted); any other write error is returned.
pub fn print(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(format!("cannot write to standard output: {e}")),
    }
}
