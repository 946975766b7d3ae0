//! A large commit (a bulk load, a feed's first fetch): the store writes on a second thread
//! while the book and the planes take the change. For a million decisions the two halves take
//! about as long (the store's inserts and fsync against the book, the projection's delta and
//! the kernel's map updates), so doing them side by side shortens the load by the shorter one.
//!
//! What the caller and the sinks see is unchanged: they hear of the change only once it is
//! durable. The kernel may enforce it a moment before the store holds it; a crash in that
//! moment is repaired by `restore`, which makes the maps equal to the store, as after a crash
//! between store and planes in the ordinary path. If the store refuses the write, the book, the
//! projection and the planes are put back as they were, and the error is the caller's.

use super::{
    EngineError,
    state::{Taken, tell},
};
use crate::{
    decision::{Decision, Ended, now_unix_ms},
    store::Prepared,
};

impl super::Engine {
    /// [`super::Engine::commit`] for a large change: see the module.
    pub(super) fn commit_bulk(
        &mut self,
        put: Vec<Decision>,
        ended: Vec<Ended>,
    ) -> Result<(), EngineError> {
        let prepared = Prepared::new(&put.iter().collect::<Vec<_>>(), &ended);
        let store = std::sync::Arc::clone(&self.store);
        let writer = std::thread::Builder::new()
            .name("store-write".into())
            .spawn(move || {
                let mut prepared = prepared;
                let written = store.write_prepared(&mut prepared);
                (prepared, written)
            });
        let writer = match writer {
            Ok(w) => w,
            // No thread to be had: the ordinary order, one step after the other.
            Err(e) => {
                tracing::debug!("no thread for the store's write ({e}): writing in turn");
                return self.commit_in_turn(put, ended);
            }
        };
        let mark = self.ended.len();
        let taken = self.enter_book_and_planes(put, &ended, true);
        let (prepared, written) = match writer.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Err(e) = written {
            self.undo(&prepared, taken, ended, mark);
            return Err(e.into());
        }
        drop(taken);
        if self.sinks.is_empty() {
            return Ok(());
        }
        let put: Vec<&Decision> = prepared
            .put_holders()
            .filter_map(|(prefix, holder)| self.book.get(&prefix, &holder))
            .collect();
        // The sinks are told from the book, which holds the decisions now.
        tell(&mut self.sinks, &put, &ended);
        Ok(())
    }

    /// Puts the book, the projection and the planes back as they were before a change whose
    /// store write failed: `prepared` names what it put, `taken` what it replaced and touched,
    /// `ended` what it removed; `mark` is where [`super::Engine::take_ended`]'s list stood.
    fn undo(&mut self, prepared: &Prepared, taken: Taken, ended: Vec<Ended>, mark: usize) {
        let Taken { touched, replaced } = taken;
        let held: Vec<bool> = touched
            .iter()
            .map(|p| self.book.contains_prefix(p))
            .collect();
        for (prefix, holder) in prepared.put_holders() {
            if let Some(d) = self.book.remove(&prefix, &holder) {
                self.peer_count(d.peer(), -1);
            }
        }
        for d in replaced
            .into_iter()
            .chain(ended.into_iter().map(|e| e.decision))
        {
            let peer = d.peer().map(str::to_owned);
            if self.book.insert(d).is_none() {
                self.peer_count(peer.as_deref(), 1);
            }
        }
        for (p, held) in touched.iter().zip(held) {
            match (held, self.book.contains_prefix(p)) {
                (true, false) => self.projection.removed(p),
                (false, true) => self.projection.added(p),
                _ => {}
            }
        }
        self.ended.truncate(mark);
        let (puts, removes) = self.projection.delta(&self.book, &touched, now_unix_ms());
        self.plane_change("undoing decisions the store did not take", |e| {
            e.remove_rules(&removes)?;
            e.put_rules(&puts)
        });
        tracing::warn!(
            decisions = prepared.put_len(),
            "the store did not take a bulk change: the book and the maps are back as they were"
        );
    }
}
