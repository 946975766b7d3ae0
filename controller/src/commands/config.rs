//! `ipwarden config check|example`.

use ipwarden::{
    cli::ConfigAction,
    config::{Config, EXAMPLE},
};

pub fn run(action: ConfigAction) -> anyhow::Result<()> {
    match action {
        ConfigAction::Check { file } => {
            let cfg = Config::load(&file, true)?;
            println!(
                "{}: ok ({} interface(s), {} allowlisted prefix(es))",
                file.display(),
                cfg.daemon.ifaces.len(),
                cfg.allow_prefixes().len()
            );
        }
        ConfigAction::Example => print!("{EXAMPLE}"),
    }
    Ok(())
}
