//! Printing results: one JSON value per line on stdout.

use std::io::Write;

use anyhow::Result;

/// Prints `value` as one line of JSON on stdout.
pub(crate) fn print_json(value: serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &value)?;
    writeln!(out)?;
    Ok(())
}
