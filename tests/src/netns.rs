//! Network namespaces with unique names, deleted on drop (also after a panic).

use std::{
    fs::File,
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sched::{CloneFlags, setns};

use crate::cmd;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named network namespace `ipw-<pid>-<n>-<role>`.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace and brings its loopback up.
    pub fn new(role: &str) -> Self {
        let name = format!(
            "ipw-{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        cmd::ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> args…`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        cmd::ip(&all)
    }

    /// Runs a program inside the namespace (`ip netns exec`), panicking on failure.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        cmd::run("ip", &all)
    }

    /// Runs a program inside the namespace and returns its output whatever the status.
    pub fn exec_output(&self, program: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        cmd::output("ip", &all)
    }

    /// Runs `f` on a fresh thread that has entered this namespace.
    ///
    /// A network namespace belongs to a thread, so this is how sockets are created inside it.
    /// Sockets keep their namespace, so they may be returned and used from any thread.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns({path}): {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl NetNs {
    /// Frames interface `ifname` in this namespace has transmitted (`/proc/net/dev`, read from a
    /// thread inside the namespace).
    pub fn transmitted(&self, ifname: &str) -> u64 {
        let name = format!("{ifname}:");
        let dev = self
            .scoped(|| std::fs::read_to_string("/proc/thread-self/net/dev"))
            .unwrap_or_else(|e| panic!("reading /proc/net/dev in {}: {e}", self.name));
        dev.lines()
            .find_map(|l| {
                let l = l.trim_start();
                let rest = l.strip_prefix(name.as_str())?;
                // Receive: bytes packets errs drop fifo frame compressed multicast; then
                // transmit: bytes packets …
                rest.split_whitespace().nth(9)?.parse().ok()
            })
            .unwrap_or_else(|| panic!("{ifname} not in /proc/net/dev of {}", self.name))
    }

    /// As [`NetNs::run`], for a closure that borrows from the caller (a scoped thread).
    pub fn scoped<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(move || {
                let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns({path}): {e}"));
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = cmd::output("ip", &["netns", "del", &self.name]);
    }
}
