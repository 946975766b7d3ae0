//! `ipwarden list`.

use ipwarden::{
    cli::{Conn, Format},
    decision::now_unix_ms,
    ipc::protocol::{Request, Response},
    output::table,
};

pub fn run(conn: &Conn, format: Format) -> anyhow::Result<()> {
    let response = super::call(conn, Request::List)?;
    let Response::Decisions { decisions } = &response else {
        return super::unexpected(&response);
    };
    if format.json {
        return super::print_json(&response);
    }
    let now = now_unix_ms();
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            vec![
                d.prefix.to_string(),
                format!("{:?}", d.action).to_lowercase(),
                d.origin.name().to_owned(),
                d.remaining(now)
                    .map_or_else(|| "never".to_owned(), super::human),
                d.reason.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["PREFIX", "ACTION", "ORIGIN", "EXPIRES IN", "REASON"],
            &rows
        )
    );
    Ok(())
}
