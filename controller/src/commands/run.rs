//! `ipwarden run`.

use ipwarden::{
    cli::RunArgs,
    daemon::{self, RunOptions},
};

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    daemon::run(&RunOptions {
        config: args.config.clone(),
        ifaces: args.ifaces.clone(),
        socket: args.socket.clone(),
        state_dir: args.state_dir.clone(),
        bpffs: args.bpffs.clone(),
        rebuild_store: args.rebuild_store,
    })?;
    Ok(())
}
