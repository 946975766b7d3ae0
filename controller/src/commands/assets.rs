//! `ipwarden generate-assets`: man pages and completions from the CLI definition itself, so
//! they can never drift from the binary they describe.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;
use ipwarden::cli::Cli;

pub fn run(out: &Path) -> anyhow::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let cmd = Cli::command();
    let mut pages = 0;
    write_pages(&cmd, "ipwarden", &man, &mut pages)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut Cli::command(), "ipwarden", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
        println!("{}", path.display());
    }
    println!("{pages} man pages in {}", man.display());
    Ok(())
}

/// Writes `name.8` for `cmd` and one page per visible subcommand (`ipwarden-allow-add.8`...).
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    pages: &mut usize,
) -> anyhow::Result<()> {
    // clap (without its `string` feature) names commands with `&'static str`; this one-shot
    // command leaks a few dozen short names.
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let cmd = cmd.clone().name(name).display_name(name);
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .render(&mut roff)
        .with_context(|| format!("rendering {name}(8)"))?;
    let path = dir.join(format!("{name}.8"));
    std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
    *pages += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, pages)?;
    }
    Ok(())
}
