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
    pub fn new(put: &[&Decision], ended: &[Ended]) -> Self {
        let mut bytes = Vec::with_capacity(put.len() * 64);
        let mut puts = Vec::with_capacity(put.len());
        let at = |n: usize| u32::try_from(n).expect("a write's records fit in 4 GiB");
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
        let ended = ended
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
        Self { bytes, puts, ended }
    }

    /// Puts the records in key order, as the store writes them (see [`super::Store::write_prepared`]):
    /// a large write then walks the tree's pages once, in order, where random order would evict
    /// dirty pages from the small page cache (`CACHE_BYTES`) and read them back (a million
    /// decisions as JSON: 1.7 s instead of 2.8 s for the inserts).
    pub(super) fn sort(&mut self) {
        let bytes = &self.bytes;
        self.puts.sort_unstable_by(|a, b| {
            bytes[a.0 as usize..a.1 as usize].cmp(&bytes[b.0 as usize..b.1 as usize])
        });
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
