//! `ipwarden block` and `ipwarden unblock`, through the daemon.

use ipnet::IpNet;
use ipwarden::{
    cli::{BlockArgs, Conn},
    decision::now_unix_ms,
    ipc::protocol::{Request, Response},
};

pub fn block(args: &BlockArgs) -> anyhow::Result<()> {
    let request = Request::Block {
        prefix: args.prefix,
        ttl_secs: args.ttl.map(|t| t.as_secs().max(1)),
        permanent: args.permanent,
        reason: args.reason.clone(),
    };
    match super::call(&args.conn, request)? {
        Response::Blocked { decision } => {
            match decision.remaining(now_unix_ms()) {
                Some(left) => println!("blocked {} for {}", decision.prefix, super::human(left)),
                None => println!("blocked {} permanently", decision.prefix),
            }
            Ok(())
        }
        other => super::unexpected(&other),
    }
}

pub fn unblock(prefix: IpNet, conn: &Conn) -> anyhow::Result<()> {
    match super::call(conn, Request::Unblock { prefix })? {
        Response::Unblocked { decision } => {
            println!(
                "unblocked {} ({} decision: {})",
                decision.prefix,
                decision.origin.name(),
                decision.reason
            );
            Ok(())
        }
        other => super::unexpected(&other),
    }
}
