//! A write made ready before the database is touched: every key and value encoded (and put in
//! key order by the writer, which may be another thread). It owns what it writes, so the engine can hand it to a thread and keep changing the
//! decisions it came from (a bulk load's book and maps are built while the store writes), and
//! it can say afterwards which holders it put, should the write fail and the change be undone.

use ipnet::IpNet;

use super::{
    keys::{decision_key, history_key, key_parts, push_decision_key},
    value,
};
use crate::decision::{Decision, Ended, Holder};

/// From how many puts the encoding is split between two threads.
const SPLIT_FROM: usize = 8192;

/// A position in the records' bytes. Panics past 4 GiB.
fn at(n: usize) -> u32 {
    u32::try_from(n).expect("a write's records fit in 4 GiB")
}

/// One transaction's records, encoded.
#[derive(Default)]
pub struct Prepared {
    /// Each put's key then value, back to back.
    bytes: Vec<u8>,
    /// (start, key end, value end) in `bytes`; in key order once sorted.
    puts: Vec<(u32, u32, u32)>,
    /// Each ended decision's key, its history key and its history record.
    pub(super) ended: Vec<(String, String, Vec<u8>)>,
}

impl Prepared {
    /// `put` inserted or replaced, `ended` removed and recorded. Panics past 4 GiB of records
    /// (a million decisions take about 60 MB).
    ///
    /// A large write's second half is encoded on a second thread: the encoding is serial work
    /// before a bulk load's store write and book can start (0.10 s of it at a million).
    pub fn new(put: &[&Decision], ended: &[Ended]) -> Self {
        let mut prepared = if put.len() >= SPLIT_FROM {
            let (first, second) = put.split_at(put.len() / 2);
            std::thread::scope(|s| {
                let other = std::thread::Builder::new()
                    .name("store-encode".into())
                    .spawn_scoped(s, || Self::encoded(second, 0));
                let mut p = Self::encoded(first, put.len());
                match other.map(|h| h.join()) {
                    Ok(Ok(rest)) => p.append(rest),
                    Ok(Err(panic)) => std::panic::resume_unwind(panic),
                    // No thread to be had: this one encodes the rest too.
                    Err(_) => p.append(Self::encoded(second, 0)),
                }
                p
            })
        } else {
            Self::encoded(put, put.len())
        };
        prepared.ended = ended
            .iter()
            .map(|e| {
                let d = &e.decision;
                (
                    decision_key(&d.prefix, &d.holder()),
                    history_key(e),
                    serde_json::to_vec(e).expect("history entries serialize"),
                )
            })
            .collect();
        prepared
    }

    /// `put`'s records, with room for `room` of them in all.
    fn encoded(put: &[&Decision], room: usize) -> Self {
        let mut bytes = Vec::with_capacity(room.max(put.len()) * 64);
        let mut puts = Vec::with_capacity(room.max(put.len()));
        let mut key = String::new();
        for d in put {
            let start = bytes.len();
            key.clear();
            push_decision_key(&mut key, &d.prefix, d.origin, d.source.as_deref());
            bytes.extend_from_slice(key.as_bytes());
            let key_end = bytes.len();
            value::encode(d, &mut bytes);
            puts.push((at(start), at(key_end), at(bytes.len())));
        }
        Self {
            bytes,
            puts,
            ended: Vec::new(),
        }
    }

    /// Adds `rest`'s records after these, in order.
    fn append(&mut self, rest: Self) {
        let shift = at(self.bytes.len());
        self.bytes.extend_from_slice(&rest.bytes);
        let moved = |n: u32| at(n as usize + shift as usize);
        self.puts.extend(
            rest.puts
                .iter()
                .map(|&(s, k, e)| (moved(s), moved(k), moved(e))),
        );
    }

    /// Puts the records in key order, as the store writes them (see [`super::Store::write_prepared`]):
    /// a large write then walks the tree's pages once, in order, where random order would evict
    /// dirty pages from the small page cache (`CACHE_BYTES`) and read them back (a million
    /// decisions as JSON: 1.7 s instead of 2.8 s for the inserts).
    ///
    /// A change may put one prefix and holder twice (a proposal that names it twice): the
    /// later one is what the book keeps, so it is the one kept here, and the earlier is dropped.
    pub(super) fn sort(&mut self) {
        let bytes = &self.bytes;
        let key = |p: &(u32, u32, u32)| &bytes[p.0 as usize..p.1 as usize];
        // Equal keys in the order they came (a put's start grows with its place).
        self.puts
            .sort_unstable_by(|a, b| key(a).cmp(key(b)).then(a.0.cmp(&b.0)));
        // `dedup_by` keeps the first of a run; the run's last is wanted.
        self.puts.reverse();
        self.puts.dedup_by(|a, b| key(a) == key(b));
        self.puts.reverse();
    }

    /// Each put's key and value, in the order they were prepared or sorted.
    pub(super) fn puts(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.puts.iter().map(|&(s, k, e)| {
            let key = std::str::from_utf8(&self.bytes[s as usize..k as usize])
                .expect("keys are written from strings");
            (key, &self.bytes[k as usize..e as usize])
        })
    }

    /// The prefix and holder of each put.
    pub fn put_holders(&self) -> impl Iterator<Item = (IpNet, Holder)> + '_ {
        self.puts()
            .map(|(key, _)| key_parts(key).expect("keys are written from decisions"))
    }

    /// How many decisions it puts.
    pub fn put_len(&self) -> usize {
        self.puts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Origin;

    #[test]
    fn a_write_encoded_on_two_threads_holds_the_records_one_thread_makes_in_order() {
        let ds: Vec<Decision> = (0..SPLIT_FROM as u32 * 2 + 3)
            .map(|i| {
                Decision::block(
                    IpNet::from(ipnet::Ipv4Net::from(std::net::Ipv4Addr::from(
                        0x0a00_0000 + i * 3,
                    ))),
                    Holder::named(Origin::Feed, format!("feed {}", i % 5)),
                    format!("reason {i}"),
                    1,
                    None,
                )
            })
            .collect();
        let refs: Vec<&Decision> = ds.iter().collect();
        let split = Prepared::new(&refs, &[]);
        let one = Prepared::encoded(&refs, 0);
        assert_eq!(split.put_len(), ds.len());
        assert!(split.puts().eq(one.puts()), "the records differ");
        let holders: Vec<(IpNet, Holder)> = ds.iter().map(|d| (d.prefix, d.holder())).collect();
        assert!(split.put_holders().eq(holders));
    }
}
