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
    write_pages(&cmd, "ipwarden", "ipwarden", &man, &mut pages)?;
    let path = man.join("ipwarden.toml.5");
    std::fs::write(&path, config_page()).with_context(|| format!("writing {}", path.display()))?;
    pages += 1;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut Cli::command(), "ipwarden", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
        println!("{}", path.display());
    }
    println!("{pages} man pages in {}", man.display());
    Ok(())
}

/// Writes `name.8` for `cmd` and one page per visible subcommand (`ipwarden-allow-add.8`...).
/// `typed` is the command as typed (`ipwarden allow add`), which the SYNOPSIS shows.
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    typed: &str,
    dir: &Path,
    pages: &mut usize,
) -> anyhow::Result<()> {
    // clap (without its `string` feature) names commands with `&'static str`; this one-shot
    // command leaks a few dozen short names.
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let typed_static: &'static str = Box::leak(typed.to_owned().into_boxed_str());
    let cmd = cmd
        .clone()
        .name(name)
        .display_name(name)
        .bin_name(typed_static);
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .render(&mut roff)
        .with_context(|| format!("rendering {name}(8)"))?;
    roff.extend_from_slice(common_sections(name).as_bytes());
    let path = dir.join(format!("{name}.8"));
    std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
    *pages += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(
            sub,
            &format!("{name}-{}", sub.get_name()),
            &format!("{typed} {}", sub.get_name()),
            dir,
            pages,
        )?;
    }
    Ok(())
}

/// Sections every page ends with: what an operator looks for after the options.
fn common_sections(name: &str) -> String {
    let mut s = String::from(
        r#".SH "EXIT STATUS"
.TP
.B 0
Success.
.TP
.B 1
An error: one line on standard error says what failed and what to do.
.TP
.B 2
Bad usage or input: the bad value is named.
.TP
.B 3
The daemon is not reachable (commands that talk to it).
.SH ENVIRONMENT
.TP
.B IPWARDEN_SOCKET
The daemon's control socket (default
.IR /run/ipwarden/ipwarden.sock ).
.TP
.B IPWARDEN_LOG
The log filter (tracing's EnvFilter syntax, default
.BR info ).
.TP
.B IPASIS_KEY
The IPASIS API key when neither
.B ipasis.key_file
nor the systemd credential
.B ipasis.key
gives it.
.SH FILES
.TP
.I /etc/ipwarden/ipwarden.toml
The configuration (see
.BR ipwarden.toml (5)).
.TP
.I /var/lib/ipwarden
The decision store and the verdict endpoint's key.
.TP
.I /sys/fs/bpf/ipwarden/IFACE
The pinned maps and link that keep enforcing when the daemon is not running.
"#,
    );
    if name == "ipwarden" {
        s.push_str(
            r#".SH EXAMPLES
.nf
ipwarden status
ipwarden block 203.0.113.7 \-\-ttl 1h \-\-reason "abuse report"
ipwarden explain 203.0.113.7
ipwarden unblock \-\-range 198.51.100.0/24
ipwarden import \-\-origin feed \-\-name drop drop.txt
ipwarden config check \-\-strict /etc/ipwarden/ipwarden.toml
.fi
"#,
        );
    }
    s.push_str(
        ".SH \"SEE ALSO\"\n.BR ipwarden (8),\n.BR ipwarden.toml (5),\n.BR systemctl (1),\n.BR bpftool (8)\n",
    );
    s
}

/// ipwarden.toml(5): the commented reference configuration, which is also the built-in
/// default (a unit test keeps them equal), as a man page.
fn config_page() -> String {
    let mut s = String::from(
        r#".TH IPWARDEN.TOML 5 "" "ipwarden" "File Formats"
.SH NAME
ipwarden.toml \- configuration of the ipwarden daemon
.SH DESCRIPTION
.B ipwarden run
reads
.I /etc/ipwarden/ipwarden.toml
(or the file given with
.BR \-\-config ).
Every key has a default; unknown keys are refused with their line.
.B ipwarden config check FILE
validates a file,
.B ipwarden config example
prints the reference below, and
.B ipwarden config show
prints the running daemon's configuration.
A reload
.RB ( "systemctl reload ipwarden" )
applies detection, scoring, decision limits, the allowlist and monitor mode at once and names
the sections that apply at the next start.
.SH REFERENCE
.nf
"#,
    );
    for line in ipwarden::config::EXAMPLE.lines() {
        let line = line.replace('\\', "\\e");
        if line.starts_with('.') || line.starts_with('\'') {
            s.push_str("\\&");
        }
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str(".fi\n.SH \"SEE ALSO\"\n.BR ipwarden (8)\n");
    s
}
