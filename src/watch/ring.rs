//! A ring of fixed capacity that keeps the newest items and overwrites the oldest:
//! what lets the live view run for days in flat memory.

/// The newest `capacity` items pushed, oldest first. All the room is taken when the ring
/// is made; pushing never allocates.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    items: Vec<T>,
    capacity: usize,
    /// Once full: where the oldest item is, and so where the next push goes.
    oldest: usize,
    /// How many items were pushed out to make room (or refused, at capacity 0).
    dropped: u64,
}

impl<T> Ring<T> {
    pub fn new(capacity: usize) -> Ring<T> {
        Ring {
            items: Vec::with_capacity(capacity),
            capacity,
            oldest: 0,
            dropped: 0,
        }
    }

    /// Adds `item` as the newest, overwriting the oldest if the ring is full.
    pub fn push(&mut self, item: T) {
        if self.items.len() < self.capacity {
            self.items.push(item);
        } else if let Some(slot) = self.items.get_mut(self.oldest) {
            *slot = item;
            self.oldest = (self.oldest + 1) % self.capacity;
            self.dropped += 1;
        } else {
            // Capacity 0: nothing is kept.
            self.dropped += 1;
        }
    }

    /// The items, oldest first; `.rev()` gives newest first.
    pub fn iter(&self) -> Iter<'_, T> {
        // Once full, the items from `oldest` on are older than those before it.
        let (newer, older) = self.items.split_at(self.oldest);
        Iter {
            older: older.iter(),
            newer: newer.iter(),
        }
    }

    pub fn newest(&self) -> Option<&T> {
        match self.oldest {
            0 => self.items.last(),
            oldest => self.items.get(oldest - 1),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many items were overwritten (or refused), so a view can say that older
    /// entries were dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.oldest = 0;
    }
}

impl<'a, T> IntoIterator for &'a Ring<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// A ring's items, oldest first, from both ends, with a known length.
#[derive(Debug, Clone)]
pub struct Iter<'a, T> {
    older: std::slice::Iter<'a, T>,
    newer: std::slice::Iter<'a, T>,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        self.older.next().or_else(|| self.newer.next())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.older.len() + self.newer.len();
        (len, Some(len))
    }
}

impl<T> DoubleEndedIterator for Iter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.newer.next_back().or_else(|| self.older.next_back())
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(ring: &Ring<u32>) -> Vec<u32> {
        ring.iter().copied().collect()
    }

    #[test]
    fn a_ring_that_is_not_full_keeps_everything_in_order() {
        let mut ring = Ring::new(4);
        ring.push(1);
        ring.push(2);
        assert_eq!(contents(&ring), [1, 2]);
        assert_eq!(ring.newest(), Some(&2));
        assert_eq!(ring.dropped(), 0);
    }

    #[test]
    fn a_full_ring_overwrites_the_oldest() {
        let mut ring = Ring::new(3);
        for i in 1..=5 {
            ring.push(i);
        }
        assert_eq!(contents(&ring), [3, 4, 5]);
        assert_eq!(ring.iter().rev().copied().collect::<Vec<_>>(), [5, 4, 3]);
        assert_eq!(ring.newest(), Some(&5));
        assert_eq!(ring.iter().len(), 3);
        assert_eq!(ring.dropped(), 2);
    }

    #[test]
    fn memory_stays_flat_however_much_is_pushed() {
        let mut ring = Ring::new(10);
        let room = ring.items.capacity();
        for i in 0..100_000 {
            ring.push(i);
        }
        assert_eq!(ring.len(), 10);
        assert_eq!(ring.items.capacity(), room);
        assert_eq!(contents(&ring), (99_990..100_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_ring_of_no_capacity_keeps_nothing() {
        let mut ring = Ring::new(0);
        ring.push(1);
        assert!(ring.is_empty());
        assert_eq!(ring.newest(), None);
        assert_eq!(ring.dropped(), 1);
    }

    #[test]
    fn a_cleared_ring_starts_over() {
        let mut ring = Ring::new(2);
        for i in 0..5 {
            ring.push(i);
        }
        ring.clear();
        ring.push(7);
        assert_eq!(contents(&ring), [7]);
    }
}
