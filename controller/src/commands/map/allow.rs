//! `ipwarden map allow add|rm|list`.

use ipwarden::cli::MapAllowAction as AllowAction;
use serde::Serialize;

#[derive(Serialize)]
struct AllowView {
    allow: Vec<String>,
}

pub fn run(action: AllowAction) -> anyhow::Result<()> {
    match action {
        AllowAction::Add { prefix, target } => {
            crate::commands::pins::open(&target)?.allow(prefix)?;
            println!("allowlisted {prefix}");
        }
        AllowAction::Rm { prefix, target } => {
            if !crate::commands::pins::open(&target)?.disallow(prefix)? {
                anyhow::bail!("{prefix} is not on the allowlist of {}", target.iface);
            }
            println!("removed {prefix} from the allowlist");
        }
        AllowAction::List { target, format } => {
            let allow: Vec<String> = crate::commands::pins::open(&target)?
                .allows()?
                .iter()
                .map(ToString::to_string)
                .collect();
            if format.json {
                return crate::commands::print::print_json(&AllowView { allow });
            }
            println!("PREFIX");
            allow.iter().for_each(|p| println!("{p}"));
        }
    }
    Ok(())
}
