//! `ipwarden list`.

use ipwarden::{
    cli::{ActionArg, Conn, Format},
    decision::Action,
    decision::now_unix_ms,
    ipc::protocol::{Request, Response},
    output::table,
};

pub fn run(conn: &Conn, format: Format, action: Option<ActionArg>) -> anyhow::Result<()> {
    let response = super::call(conn, Request::List)?;
    let Response::Decisions { mut decisions } = response else {
        return super::unexpected(&response);
    };
    if let Some(a) = action {
        let want = match a {
            ActionArg::Block => Action::Block,
            ActionArg::Challenge => Action::Challenge,
        };
        decisions.retain(|d| d.action == want);
    }
    if format.json {
        return super::print_json(&Response::Decisions { decisions });
    }
    let now = now_unix_ms();
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            vec![
                d.prefix.to_string(),
                d.action.name().to_owned(),
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
