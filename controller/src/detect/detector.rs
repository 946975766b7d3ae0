//! The per-source detector: packet and SYN rates over a sliding window, heavy-hitter episodes,
//! and the hard rate limit.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use super::{
    aggregate::Member,
    rates::{Rates, Sample, rates},
    reading::{Reading, Snapshot},
    tracks::{Key, Tracks},
};
use crate::{config::DetectionConfig, dataplane::READ_SLACK_PACKETS};

/// Below this many tracks the table is not worth shrinking.
const MIN_SHRINK: usize = 4096;

/// What detection found.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A source crossed a heavy-hitter threshold: the start of an episode.
    HeavyHitter {
        source: IpNet,
        addr: IpAddr,
        rates: Rates,
    },
    /// A source stayed above the hard limit for `hard_for`.
    HardLimit { source: IpNet, rates: Rates },
}

/// A source's state as `top` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceView {
    pub source: IpNet,
    pub rates: Rates,
    pub packets: u64,
    pub bytes: u64,
    pub syn: u64,
    pub heavy: bool,
}

/// One source's state: 112 bytes (128 with its key in the table), so a million sources fit in
/// the daemon's budget.
///
/// The rates a hinted source is judged at (its score's velocity): the fast window's, but no
/// more than its counters' since their first packet (over at least the fast window). The fast
/// window starts at the loud burst that raised the hint, and a sender catching up after a stall
/// fills 50 ms at twice its rate; a source first counted long ago and just turned loud reads
/// lower, and its next poll measures it again.
fn sustained(fast: Rates, s: &Snapshot, now_ns: u64, window_ns: u64) -> Rates {
    let since = Sample {
        t: s.first_seen_ns.min(now_ns.saturating_sub(window_ns)),
        packets: 0,
        syn: 0,
    };
    let now = Sample {
        t: now_ns,
        packets: s.packets,
        syn: s.syn,
    };
    let lifetime = rates(&since, &now);
    Rates {
        pps: fast.pps.min(lifetime.pps),
        syn_pps: fast.syn_pps.min(lifetime.syn_pps),
    }
}

/// The sliding window is approximated with two baselines: `mid` is replaced every half window
/// and `old` takes its place, so rates are measured from a point between half a window and a
/// window ago. No per-source sample queue: O(1) memory and work per source and poll.
#[derive(Debug)]
struct Track {
    now: Sample,
    mid: Sample,
    old: Sample,
    bytes: u64,
    /// The low 64 bits of a real address of the source (IPv6; the key holds the rest).
    addr_low: u64,
    pps: f32,
    syn_pps: f32,
    /// Kernel time the rate first passed the hard limit in this run; 0 when below.
    over_hard_since: u64,
    last_poll: u32,
    heavy: bool,
    hard_fired: bool,
}

impl Track {
    /// `floor_ns`: the shortest span a new source's first packets are spread over (one poll
    /// interval).
    fn new(s: &Snapshot, now_ns: u64, floor_ns: u64) -> Self {
        // A new source's baseline is its first packet: a flood is measured at its first
        // poll instead of its second. But never less than one poll interval back: 20 packets
        // sent in one millisecond by a source never seen before read as 20 000 pps measured
        // from its first packet, and a client's first burst was blocked as a flood.
        let base = Sample {
            t: s.first_seen_ns.min(now_ns.saturating_sub(floor_ns)),
            packets: 0,
            syn: 0,
        };
        Self {
            now: base,
            mid: base,
            old: base,
            bytes: 0,
            addr_low: Key::low(&s.addr),
            pps: 0.0,
            syn_pps: 0.0,
            over_hard_since: 0,
            last_poll: 0,
            heavy: false,
            hard_fired: false,
        }
    }

    /// Brings a track up to this poll's reading `s`.
    fn update(&mut self, s: &Snapshot, now_ns: u64, half_ns: u64, poll: u32) {
        let mut s = *s;
        // Last poll's reader counted some packets twice (`READ_SLACK_PACKETS`): keep the higher.
        if s.packets < self.now.packets && self.now.packets - s.packets <= READ_SLACK_PACKETS {
            s.packets = self.now.packets;
            s.syn = s.syn.max(self.now.syn);
            s.bytes = s.bytes.max(self.bytes);
        }
        if s.packets < self.now.packets {
            // Counters went backwards: the kernel evicted and re-created the entry.
            let (heavy, fired, since) = (self.heavy, self.hard_fired, self.over_hard_since);
            *self = Track::new(&s, now_ns, 0);
            (self.heavy, self.hard_fired, self.over_hard_since) = (heavy, fired, since);
        }
        self.now = Sample {
            t: now_ns,
            packets: s.packets,
            syn: s.syn,
        };
        if now_ns.saturating_sub(self.mid.t) >= half_ns {
            self.old = self.mid;
            self.mid = self.now;
        }
        self.bytes = s.bytes;
        self.addr_low = Key::low(&s.addr);
        self.last_poll = poll;
        let r = rates(&self.old, &self.now);
        self.pps = r.pps as f32;
        self.syn_pps = r.syn_pps as f32;
    }

    fn rates(&self) -> Rates {
        Rates {
            pps: f64::from(self.pps),
            syn_pps: f64::from(self.syn_pps),
        }
    }
}

/// Per-source tracks.
#[derive(Debug)]
pub struct Detector {
    cfg: DetectionConfig,
    /// Flat, by integer key (see `tracks`).
    tracks: Tracks<Track>,
    polls: u32,
}

impl Detector {
    pub fn new(cfg: DetectionConfig) -> Self {
        Self {
            cfg,
            tracks: Tracks::default(),
            polls: 0,
        }
    }

    /// Applies a reloaded configuration; tracks are kept.
    pub fn reconfigure(&mut self, cfg: DetectionConfig) {
        self.cfg = cfg;
    }

    /// Feeds one poll: every source's cumulative counters at kernel time `now_ns`. Sources
    /// absent from the poll (evicted from the kernel's LRU map) are forgotten at once, heavy
    /// hitters once their window has passed.
    ///
    /// Sources new to this poll are inserted only after the forgotten ones are gone, so the
    /// table never holds last poll's sources and this poll's newcomers at once: under a
    /// random-source flood, where most of every poll is new, it stays the size of one poll
    /// instead of growing to two (and a table never shrinks by itself).
    pub fn observe<R: Into<Reading>>(
        &mut self,
        now_ns: u64,
        readings: impl IntoIterator<Item = R>,
    ) -> Vec<Event> {
        self.polls = self.polls.wrapping_add(1);
        let window_ns = self.cfg.window.as_nanos() as u64;
        let half = window_ns / 2;
        let mut events = Vec::new();
        let mut fresh = Vec::new();
        for r in readings {
            let r: Reading = r.into();
            match self.tracks.get_mut(&r.key) {
                Some(track) => {
                    track.update(&r.snapshot(), now_ns, half, self.polls);
                    judge(&self.cfg, track, r.key, now_ns, &mut events);
                }
                None => fresh.push(r),
            }
        }
        // A source the kernel no longer reports was evicted from its LRU map: forget it at once,
        // so the tracks stay bounded by the maps' capacity whatever a random-source flood does.
        // A heavy hitter is kept until its window is over, for `top` and `explain`.
        // One pass over the table: it is the size of the kernel's maps.
        let polls = self.polls;
        self.tracks.retain(|t| {
            if t.last_poll == polls {
                return true;
            }
            if !(t.heavy && t.now.t + window_ns > now_ns) {
                return false;
            }
            // Silent this poll: the rate decays as if the counters stood still.
            let still = Sample { t: now_ns, ..t.now };
            let r = rates(&t.old, &still);
            t.pps = r.pps as f32;
            t.syn_pps = r.syn_pps as f32;
            if now_ns.saturating_sub(t.mid.t) >= half {
                t.old = t.mid;
                t.mid = still;
            }
            true
        });
        // One allocation of the final size, not a series of doublings; a table most of whose
        // sources went away gives the memory back.
        self.tracks.fit(fresh.len(), MIN_SHRINK);
        for r in fresh {
            let (key, s) = (r.key, r.snapshot());
            let mut track = Track::new(&s, now_ns, self.cfg.poll_interval.as_nanos() as u64);
            track.update(&s, now_ns, half, polls);
            judge(&self.cfg, &mut track, key, now_ns, &mut events);
            self.tracks.insert_new(key, track);
        }
        events
    }

    /// A source the program hinted is loud, measured at `rates` over `detection.fast_window`
    /// up to kernel time `now_ns` with counters `s`: a heavy-hitter episode starts now if the
    /// rates reach a threshold and none is under way, instead of at the next poll. The track
    /// is created or brought up to `s` as a poll would, so the next poll goes on from it.
    pub fn loud(
        &mut self,
        source: IpNet,
        s: &Snapshot,
        rates: Rates,
        now_ns: u64,
    ) -> Option<Event> {
        let heavy = rates.pps >= self.cfg.pps_threshold as f64
            || rates.syn_pps >= self.cfg.syn_pps_threshold as f64;
        if !heavy {
            return None;
        }
        let half = self.cfg.window.as_nanos() as u64 / 2;
        let floor = self.cfg.poll_interval.as_nanos() as u64;
        let polls = self.polls;
        let track = self
            .tracks
            .get_or_insert_with(Key::of(&source), || Track::new(s, now_ns, floor));
        if track.heavy {
            return None;
        }
        if s.packets >= track.now.packets {
            track.update(s, now_ns, half, polls);
        }
        track.heavy = true;
        track.pps = track.pps.max(rates.pps as f32);
        track.syn_pps = track.syn_pps.max(rates.syn_pps as f32);
        Some(Event::HeavyHitter {
            source,
            addr: s.addr,
            rates: sustained(rates, s, now_ns, self.cfg.fast_window.as_nanos() as u64),
        })
    }

    /// Ends a source's episode (its decision expired or was lifted), so continued abuse is
    /// detected again.
    pub fn reset(&mut self, source: &IpNet) {
        if let Some(t) = self.tracks.get_mut(&Key::of(source)) {
            t.heavy = false;
            t.over_hard_since = 0;
            t.hard_fired = false;
        }
    }

    /// The current rates of one source.
    pub fn get(&self, source: &IpNet) -> Option<SourceView> {
        let key = Key::of(source);
        self.tracks.get(&key).map(|t| view(&key, t))
    }

    /// The `n` busiest sources by packet rate.
    pub fn top(&self, n: usize) -> Vec<SourceView> {
        let mut all: Vec<SourceView> = self.tracks.iter().map(|(k, t)| view(k, t)).collect();
        all.sort_by(|a, b| {
            b.rates
                .pps
                .total_cmp(&a.rates.pps)
                .then_with(|| b.packets.cmp(&a.packets))
                .then_with(|| a.source.cmp(&b.source))
        });
        all.truncate(n);
        all
    }

    /// The sources counted at the last poll with a rate above zero: the members of aggregates.
    pub fn active(&self) -> impl Iterator<Item = Member> + '_ {
        let polls = self.polls;
        self.tracks
            .iter()
            .filter(move |(_, t)| t.last_poll == polls && t.pps > 0.0)
            .map(|(k, t)| Member {
                source: k.net(),
                addr: k.addr(t.addr_low),
                pps: f64::from(t.pps),
            })
    }

    /// Sources tracked, and how many are heavy hitters now.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.tracks.len(),
            self.tracks.values().filter(|t| t.heavy).count(),
        )
    }
}

fn view(key: &Key, t: &Track) -> SourceView {
    SourceView {
        source: key.net(),
        rates: t.rates(),
        packets: t.now.packets,
        bytes: t.bytes,
        syn: t.now.syn,
        heavy: t.heavy,
    }
}

/// Updates a source's episode state from its fresh rates and emits the events it earns. Works
/// on the track in hand: one hash-table probe per source and poll, not two.
fn judge(cfg: &DetectionConfig, track: &mut Track, key: Key, now_ns: u64, out: &mut Vec<Event>) {
    let source = key.net();
    let r = track.rates();
    let heavy = r.pps >= cfg.pps_threshold as f64 || r.syn_pps >= cfg.syn_pps_threshold as f64;
    if heavy && !track.heavy {
        out.push(Event::HeavyHitter {
            source,
            addr: key.addr(track.addr_low),
            rates: r,
        });
    }
    track.heavy = heavy;
    if r.pps >= cfg.hard_pps_limit as f64 {
        if track.over_hard_since == 0 {
            track.over_hard_since = now_ns.max(1);
        }
        let since = track.over_hard_since;
        if !track.hard_fired && now_ns.saturating_sub(since) >= cfg.hard_for.as_nanos() as u64 {
            track.hard_fired = true;
            out.push(Event::HardLimit { source, rates: r });
        }
    } else {
        track.over_hard_since = 0;
        track.hard_fired = false;
    }
}

#[cfg(test)]
#[path = "detector_tests.rs"]
mod tests;
