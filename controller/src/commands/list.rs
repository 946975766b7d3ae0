//! `ipwarden list` and `ipwarden history`.

use ipnet::IpNet;
use ipwarden::{
    cli::{ActionArg, Conn, Format},
    decision::{Action, Decision, Origin, now_unix_ms},
    ipc::protocol::{Request, Response},
    output::table,
};

/// `manual`, `velocity`, `feed:NAME`.
fn holder(d: &Decision) -> String {
    d.holder().to_string()
}

pub fn run(
    conn: &Conn,
    format: Format,
    action: Option<ActionArg>,
    origin: Option<Origin>,
) -> anyhow::Result<()> {
    let response = super::call(conn, Request::List { origin })?;
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
                holder(d),
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

pub fn history(
    prefix: Option<IpNet>,
    limit: usize,
    conn: &Conn,
    format: Format,
) -> anyhow::Result<()> {
    let response = super::call(conn, Request::History { prefix, limit })?;
    let Response::History { entries } = &response else {
        return super::unexpected(&response);
    };
    if format.json {
        return super::print_json(&response);
    }
    let now = now_unix_ms();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let d = &e.decision;
            vec![
                d.prefix.to_string(),
                d.action.name().to_owned(),
                holder(d),
                format!(
                    "{} {} ago",
                    e.end.name(),
                    super::human(std::time::Duration::from_millis(
                        now.saturating_sub(e.ended_unix_ms)
                    ))
                ),
                d.ttl().map_or_else(|| "permanent".to_owned(), super::human),
                d.reason.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["PREFIX", "ACTION", "ORIGIN", "ENDED", "LASTED", "REASON"],
            &rows
        )
    );
    Ok(())
}
