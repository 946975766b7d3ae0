use super::*;
use crate::dataplane::SynproxyCounts;

fn guard(when: SynproxyWhen) -> Guard {
    let section = SynproxySection {
        ports: vec![80],
        when,
        syn_pps: 1000,
        calm: Duration::from_secs(30),
        ..SynproxySection::default()
    };
    Guard {
        attack: when == SynproxyWhen::Always,
        program: Program::default(),
        section,
        // As if installed: the table is not what these tests are about.
        table: Ok(()),
        checked: Some(Instant::now()),
        high: None,
        last: None,
        syn_pps: 0.0,
        entered: 0,
        left: 0,
        counts: SynproxyCounts::default(),
    }
}

fn syns(n: u64) -> SynproxyCounts {
    SynproxyCounts {
        syns: n,
        ..SynproxyCounts::default()
    }
}

#[test]
fn under_attack_starts_at_the_rate_and_stops_after_the_calm() {
    let mut g = guard(SynproxyWhen::UnderAttack);
    let t0 = Instant::now();
    let s = Duration::from_secs(1);
    assert!(!g.observe(t0, syns(0)));
    assert!(!g.observe(t0 + s, syns(500)), "500 SYN/s is below 1000");
    assert!(!g.answering());
    assert!(g.observe(t0 + 2 * s, syns(2500)), "2000 SYN/s: answering");
    assert!(g.answering());
    assert_eq!(g.program().0.flags, Program::COUNT | Program::ANSWER);
    // Quiet, but not for the whole calm yet.
    assert!(!g.observe(t0 + 12 * s, syns(2600)));
    assert!(g.answering());
    assert!(g.observe(t0 + 33 * s, syns(2700)), "30 s calm: stops");
    assert!(!g.answering());
    assert_eq!((g.entered, g.left), (1, 1));
    assert_eq!(g.program().0.flags, Program::COUNT, "counted, not answered");
}

#[test]
fn always_answers_but_never_without_its_table() {
    let mut g = guard(SynproxyWhen::Always);
    assert!(g.answering());
    assert!(!g.observe(Instant::now(), syns(0)));
    g.table = Err("nft: not found".into());
    assert!(!g.answering(), "no table: a cookie's ACK would be reset");
    assert_eq!(g.program().0.flags, Program::COUNT);
    assert_eq!(g.view().problem.as_deref(), Some("nft: not found"));
}
