//! Debian's nginx (unpacked by `cargo xtask setup`) in front of the verdict endpoint, inside a
//! namespace: `auth_request` asks ipwarden about every request, copies its `X-Ipwarden-*`
//! headers to a tiny upstream (nginx itself, which echoes them), serves the challenge page on
//! 401 and passes `/.ipwarden/` through. The configuration is the README's.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::netns::NetNs;

/// Where the front listens (the edge's address in `Topology`), and the upstream.
pub const PORT: u16 = 8080;
const UPSTREAM: &str = "127.0.0.1:8081";

pub fn binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/nginx/usr/sbin/nginx");
    assert!(
        bin.is_file(),
        "nginx is not unpacked at {}: run `cargo xtask setup`",
        bin.display()
    );
    bin
}

/// A running nginx.
pub struct Nginx {
    child: Child,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx in `ns` on `listen` (an address of the namespace), asking the verdict
    /// endpoint at `verdict` (`127.0.0.1:PORT` in the same namespace).
    pub fn start(ns: &NetNs, listen: &str, verdict: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ipw-nginx-")
            .tempdir()
            .expect("a directory");
        let d = dir.path().display().to_string();
        let conf = CONF
            .replace("{DIR}", &d)
            .replace("{LISTEN}", &format!("{listen}:{PORT}"))
            .replace("{VERDICT}", verdict)
            .replace("{UPSTREAM}", UPSTREAM);
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("writing nginx.conf");
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(binary())
            .args(["-p", &d, "-c", "nginx.conf", "-e", "error.log"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("starting nginx");
        let mut nginx = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !nginx.listening(ns, listen) {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", nginx.log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s:\n{}",
                nginx.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    fn listening(&self, ns: &NetNs, listen: &str) -> bool {
        let script = format!("exec 3<>/dev/tcp/{listen}/{PORT}");
        Command::new("ip")
            .args(["netns", "exec", ns.name(), "/bin/bash", "-c", &script])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Its error log and output.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CONF: &str = r#"
daemon off;
master_process off;
worker_processes 1;
pid {DIR}/nginx.pid;
error_log {DIR}/error.log info;
events { worker_connections 128; }
http {
    access_log off;
    client_body_temp_path {DIR}/body;
    proxy_temp_path {DIR}/proxy;
    fastcgi_temp_path {DIR}/fastcgi;
    uwsgi_temp_path {DIR}/uwsgi;
    scgi_temp_path {DIR}/scgi;

    upstream ipwarden {
        server {VERDICT};
        keepalive 8;
    }

    server {
        listen {LISTEN};

        # Every request: ask ipwarden first.
        location / {
            auth_request /.ipwarden/auth;
            auth_request_set $ipw_action $upstream_http_x_ipwarden_action;
            auth_request_set $ipw_labels $upstream_http_x_ipwarden_labels;
            auth_request_set $ipw_score $upstream_http_x_ipwarden_score;
            proxy_set_header X-Ipwarden-Action $ipw_action;
            proxy_set_header X-Ipwarden-Labels $ipw_labels;
            proxy_set_header X-Ipwarden-Score $ipw_score;
            error_page 401 /.ipwarden/challenge;
            proxy_pass http://{UPSTREAM};
        }

        location = /.ipwarden/auth {
            internal;
            proxy_pass http://ipwarden/.ipwarden/verdict;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Original-URI $request_uri;
        }

        # The challenge page and its answer.
        location /.ipwarden/ {
            proxy_pass http://ipwarden;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Original-URI $request_uri;
        }
    }

    # The application: shows what ipwarden told it.
    server {
        listen {UPSTREAM};
        location / {
            default_type text/html;
            return 200 "<p id=app>upstream: action=$http_x_ipwarden_action labels=$http_x_ipwarden_labels score=$http_x_ipwarden_score</p>\n";
        }
    }
}
"#;
