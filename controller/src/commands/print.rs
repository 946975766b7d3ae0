//! Printing: JSON, and durations for tables.

/// Prints a serializable value as JSON, on one line.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    // One document per line: `jq`, `grep` and line-based log shippers take it as it is.
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// `3m 20s`-style durations for tables.
pub fn human(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}
