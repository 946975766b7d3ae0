//! `ipwarden block` and `ipwarden unblock`, through the daemon.

use ipwarden::{
    cli::{BlockArgs, UnblockArgs},
    decision::{Action, Decision, Origin, now_unix_ms},
    wire::{Request, Response},
};

pub fn block(args: &BlockArgs) -> anyhow::Result<()> {
    let request = Request::Block {
        prefix: args.prefix,
        ttl_secs: args.ttl.map(|t| t.as_secs().max(1)),
        permanent: args.permanent,
        replace: args.replace,
        reason: args.reason.clone(),
        origin: (args.origin != Origin::Manual).then_some(args.origin),
        source: args.name.clone(),
        challenge_pps: args.challenge,
        challenge_burst: args.burst,
    };
    match crate::commands::ask::call(&args.conn, request)? {
        Response::Blocked {
            decision,
            kept_longer,
        } => {
            let what = match (decision.action, decision.rate) {
                (Action::Challenge, Some(r)) => {
                    format!(
                        "challenged (each source {} pps, bursts of {})",
                        r.pps, r.burst
                    )
                }
                _ => "blocked".to_owned(),
            };
            match decision.remaining(now_unix_ms()) {
                Some(left) => println!(
                    "{what} {} for {}",
                    decision.prefix,
                    crate::commands::print::human(left)
                ),
                None => println!("{what} {} permanently", decision.prefix),
            }
            if kept_longer {
                println!(
                    "(it was already blocked for longer: the later expiry is kept; --replace sets the new one)"
                );
            }
            Ok(())
        }
        other => crate::commands::ask::unexpected(&other),
    }
}

/// `manual`, or `feed:NAME`.
fn holder_of(d: &Decision) -> String {
    d.holder().to_string()
}

pub fn unblock(args: &UnblockArgs) -> anyhow::Result<()> {
    let Some(prefix) = args.prefix else {
        return unblock_where(args);
    };
    let request = Request::Unblock {
        prefix,
        origin: args.origin,
        source: args.name.clone(),
        all_origins: args.all_origins,
    };
    match crate::commands::ask::call(&args.conn, request)? {
        Response::Unblocked {
            decision,
            lifted,
            still,
        } => {
            let lifted = if lifted.is_empty() {
                vec![decision]
            } else {
                lifted
            };
            for d in &lifted {
                println!(
                    "unblocked {} ({} decision: {})",
                    d.prefix,
                    holder_of(d),
                    d.reason
                );
            }
            if let Some(first) = still.first() {
                let now = now_unix_ms();
                let state = match first.action {
                    Action::Block => "blocked",
                    Action::Challenge => "challenged",
                    Action::Pass => "passed",
                };
                println!(
                    "{} is still {state}: {}",
                    first.prefix,
                    still
                        .iter()
                        .map(|d| format!(
                            "{} {} ({})",
                            holder_of(d),
                            d.action.name(),
                            d.remaining(now).map_or_else(
                                || "permanent".to_owned(),
                                crate::commands::print::human
                            )
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        }
        other => crate::commands::ask::unexpected(&other),
    }
}

/// `unblock --range CIDR` and `unblock --origin O [--name N] --all`.
fn unblock_where(args: &UnblockArgs) -> anyhow::Result<()> {
    let request = Request::UnblockWhere {
        range: args.range,
        origin: args.origin,
        source: args.name.clone(),
    };
    match crate::commands::ask::call(&args.conn, request)? {
        Response::LiftedMany { lifted } => {
            let mut what = Vec::new();
            if let Some(r) = args.range {
                what.push(format!("inside {r}"));
            }
            if let Some(o) = args.origin {
                what.push(match &args.name {
                    Some(n) => format!("held by {o}:{n}"),
                    None => format!("of origin {o}"),
                });
            }
            println!(
                "lifted {lifted} decision{} {}",
                if lifted == 1 { "" } else { "s" },
                what.join(" ")
            );
            Ok(())
        }
        other => crate::commands::ask::unexpected(&other),
    }
}
