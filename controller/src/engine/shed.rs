//! Draining a big vector into another structure without holding its items twice.

/// Below this many bytes a vector is not worth shrinking as it drains.
const SHED_FROM: usize = 1 << 20;

/// Yields `v`'s items in order and hands the vector's memory back as it empties: what the
/// items move into (the book) grows while the vector shrinks, so a bulk load of a million
/// decisions peaks near one copy of them, not two. A shrink of a large block is a trim in
/// place by the allocator (no copy); there are O(log n) of them.
pub fn shed<T>(mut v: Vec<T>) -> impl Iterator<Item = T> {
    v.reverse();
    std::iter::from_fn(move || {
        let item = v.pop()?;
        if v.capacity() * size_of::<T>() > SHED_FROM && v.len() < v.capacity() / 4 * 3 {
            v.shrink_to_fit();
        }
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn yields_in_order_and_gives_memory_back() {
        let n = 1 << 18;
        let mut it = super::shed((0..n).collect::<Vec<u64>>());
        for i in 0..n {
            assert_eq!(it.next(), Some(i));
        }
        assert_eq!(it.next(), None);
    }
}
