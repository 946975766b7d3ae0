//! `ipwarden allow add|rm|list`, through the daemon.

use ipwarden::{
    cli::AllowAction,
    output::table,
    wire::{Request, Response},
};

pub fn run(action: AllowAction) -> anyhow::Result<()> {
    match action {
        AllowAction::Add { prefix, conn } => {
            crate::commands::ask::done(&conn, Request::AllowAdd { prefix })
        }
        AllowAction::Rm { prefix, conn } => {
            crate::commands::ask::done(&conn, Request::AllowRm { prefix })
        }
        AllowAction::List { conn, format } => {
            let response = crate::commands::ask::call(&conn, Request::AllowList)?;
            let Response::Allow { allow } = &response else {
                return crate::commands::ask::unexpected(&response);
            };
            if format.json {
                return crate::commands::print::print_json(&response);
            }
            let rows: Vec<Vec<String>> = allow
                .iter()
                .map(|a| vec![a.prefix.to_string(), a.origin.to_string()])
                .collect();
            print!("{}", table(&["PREFIX", "ORIGIN"], &rows));
            Ok(())
        }
    }
}
