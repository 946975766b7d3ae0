//! The first call of every privileged test: fail loudly, never skip, when the machine cannot run
//! it.

use std::path::Path;

/// Panics with what is missing unless this process can load XDP programs and build namespaces.
pub fn require_privileges() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "privileged test: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for netns and bpffs); run `sudo cargo xtask test`"
    );
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "privileged test: the kernel has no BTF (/sys/kernel/btf/vmlinux missing)"
    );
    for tool in ["ip", "ping"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "privileged test: `{tool}` not on PATH; run `cargo xtask setup`"
        );
    }
    assert!(
        !ipwarden::dataplane::object_is_stub(),
        "privileged test: this build embeds the stub XDP object (AYA_BUILD_SKIP); run `cargo xtask test`"
    );
}
