//! The one lock policy. A panic is never hidden: a task that panics ends with the panic
//! reported (the daemon's loops surface it and stop, and systemd restarts the daemon from its
//! store, while the XDP program keeps enforcing). A lock that panic poisoned is therefore
//! taken as it was left rather than panicking again in every other task on the way down.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, taking a poisoned lock as it was left.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads `l`, taking a poisoned lock as it was left.
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `l`, taking a poisoned lock as it was left.
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
