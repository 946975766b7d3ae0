//! One status wrapper for every source: the view its task writes and `status` reads.

use std::sync::Mutex;

/// A source's view, shared between its task (which updates it) and the daemon (which shows
/// it). A panic while updating leaves the view as it was left: the view is plain data, and
/// the panic itself is what the daemon reports.
#[derive(Debug, Default)]
pub struct StatusCell<V>(Mutex<V>);

impl<V: Clone> StatusCell<V> {
    pub fn new(view: V) -> Self {
        Self(Mutex::new(view))
    }

    /// A copy of the view.
    pub fn view(&self) -> V {
        crate::sync::lock(&self.0).clone()
    }

    /// Changes the view.
    pub fn update<T>(&self, f: impl FnOnce(&mut V) -> T) -> T {
        f(&mut crate::sync::lock(&self.0))
    }
}
