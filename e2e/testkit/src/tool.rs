//! Running the command-line tools the fixtures are made with (openssl, ip).

use std::io;
use std::process::Command;

/// Runs `command` to completion; a failure to start names the Debian package (`package`), a
/// non-zero exit carries the tool's stderr and `hint`.
pub(crate) fn run(mut command: Command, package: &str, hint: &str) -> io::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = command
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("run {program} (Debian's {package}): {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    Err(io::Error::other(format!(
        "{program} {}: {}{hint}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
