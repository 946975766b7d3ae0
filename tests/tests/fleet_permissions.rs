//! Per-host NATS permissions, as README's "Fleet permissions" shows them, against a real
//! nats-server 2.9.10 reading them from its config file: each host signs in with its own NKey,
//! the fleet works as before, and a host cannot write or delete another host's keys.
//!
//! No root needed: the daemon's channels are driven directly.

use std::{os::unix::fs::PermissionsExt as _, path::PathBuf, time::Duration};

use ipwarden::{
    config::FleetConfig,
    decision::{Decision, Holder, Origin, now_unix_ms},
    engine::{Sink as _, SourceEvent},
    fleet,
};
use ipwarden_tests::{
    fleet_host::{self, Host},
    nats::NatsServer,
};

/// The permissions of host `id` (docs/fleet.md, "Fleet permissions"): its own decision keys and host
/// id, the shared answers and claims, and the JetStream API calls a link makes. Not
/// `$JS.API.STREAM.PURGE`: a purge filter is in the request's body, so granting it would let a
/// host remove every other host's keys.
fn host_user(public_key: &str, id: &str) -> String {
    format!(
        r#"    {{
      nkey: {public_key}
      permissions: {{
        publish: {{
          allow: [
            "$KV.ipwarden-decisions.{id}.>", "$KV.ipwarden-hosts.{id}",
            "$KV.ipwarden-enrich.>", "$KV.ipwarden-claims.>",
            "$JS.API.INFO", "$JS.API.STREAM.INFO.>",
            "$JS.API.STREAM.CREATE.KV_ipwarden-decisions", "$JS.API.STREAM.CREATE.KV_ipwarden-enrich",
            "$JS.API.STREAM.CREATE.KV_ipwarden-claims", "$JS.API.STREAM.CREATE.KV_ipwarden-hosts",
            "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DELETE.>", "$JS.API.CONSUMER.INFO.>",
            "$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>",
            "$JS.FC.>", "$JS.ACK.>"
          ]
        }}
        subscribe: {{ allow: ["_INBOX.>"] }}
      }}
    }}
"#
    )
}

struct Identity {
    pair: nkeys::KeyPair,
    seed_file: PathBuf,
}

fn identity(dir: &std::path::Path, id: &str) -> Identity {
    let pair = nkeys::KeyPair::new_user();
    let seed_file = dir.join(format!("{id}.nk"));
    std::fs::write(&seed_file, pair.seed().unwrap()).unwrap();
    std::fs::set_permissions(&seed_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    Identity { pair, seed_file }
}

fn velocity(prefix: &str) -> Decision {
    Decision::block(
        prefix.parse().unwrap(),
        Holder::of(Origin::Velocity),
        "heavy hitter: 4000 pps",
        now_unix_ms(),
        Some(Duration::from_secs(600)),
    )
}

async fn host(server: &NatsServer, id: &str, who: &Identity) -> Host {
    let cfg = FleetConfig {
        url: vec![ipwarden::config::Url::parse(&server.url()).unwrap()],
        nkey_file: Some(who.seed_file.clone()),
        ..FleetConfig::default()
    };
    fleet_host::start(&cfg, fleet_host::local(id), None, Vec::new()).await
}

/// A raw client signed in as `who`, on the decisions bucket.
async fn kv_as(server: &NatsServer, who: &Identity) -> async_nats::jetstream::kv::Store {
    let client = async_nats::ConnectOptions::new()
        .nkey(who.pair.seed().unwrap())
        .connect(server.url())
        .await
        .unwrap();
    async_nats::jetstream::new(client)
        .get_key_value("ipwarden-decisions")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_writes_only_its_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let a = identity(dir.path(), "edge-a");
    let b = identity(dir.path(), "edge-b");
    let config = format!(
        "authorization {{\n  users = [\n{}{}  ]\n}}\n",
        host_user(&a.pair.public_key(), "edge-a"),
        host_user(&b.pair.public_key(), "edge-b")
    );
    let server = NatsServer::start_with_config(&config);
    // The fleet works under these permissions: buckets opened, ids held, decisions shared.
    let mut ha = host(&server, "edge-a", &a).await;
    let mut hb = host(&server, "edge-b", &b).await;
    ha.connected().await;
    hb.connected().await;
    assert!(matches!(ha.next().await, SourceEvent::ReplaceOrigin { .. }));
    assert!(matches!(hb.next().await, SourceEvent::ReplaceOrigin { .. }));
    let d = velocity("203.0.113.9/32");
    hb.fleet.outbox.changed(&[&d], &[]);
    match ha.next().await {
        SourceEvent::Propose(got) => assert_eq!(got[0].prefix, d.prefix),
        other => panic!("expected B's decision, got {other:?}"),
    }
    let b_key = fleet::keys::decision_key("edge-b", &d.holder(), &d.prefix);
    let b_value = serde_json::to_vec(&fleet::wire::Shared::of("edge-b", &d)).unwrap();
    // Signed in as A: overwriting or deleting B's key is refused by the server ...
    let as_a = kv_as(&server, &a).await;
    let forged =
        serde_json::to_vec(&fleet::wire::Shared::of("edge-b", &velocity("0.0.0.0/1"))).unwrap();
    let put = tokio::time::timeout(Duration::from_secs(2), as_a.put(&b_key, forged.into())).await;
    assert!(!matches!(put, Ok(Ok(_))), "A overwrote B's key: {put:?}");
    let del = tokio::time::timeout(Duration::from_secs(2), as_a.delete(&b_key)).await;
    assert!(!matches!(del, Ok(Ok(()))), "A deleted B's key: {del:?}");
    // ... while its own keys are its to write (the refusal is the permission, not the client).
    let own = velocity("198.51.100.4/32");
    let a_key = fleet::keys::decision_key("edge-a", &own.holder(), &own.prefix);
    let a_value = serde_json::to_vec(&fleet::wire::Shared::of("edge-a", &own)).unwrap();
    tokio::time::timeout(Duration::from_secs(5), as_a.put(&a_key, a_value.into()))
        .await
        .expect("A's own put timed out")
        .expect("A's own put was refused");
    // B's key holds B's value, and B heard of nothing but A's own decision.
    let as_b = kv_as(&server, &b).await;
    let held = as_b.get(&b_key).await.unwrap().expect("B's key is gone");
    assert_eq!(held.to_vec(), b_value);
    match hb.next().await {
        SourceEvent::Propose(got) => assert_eq!(got[0].prefix, own.prefix),
        other => panic!("expected A's own decision, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), hb.next())
            .await
            .is_err(),
        "B received something A was not allowed to write"
    );
    let _ = ha;
}
