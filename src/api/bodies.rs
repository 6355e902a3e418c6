//! Answers of the polled reads, kept serialized: a client polls an order or a request every
//! couple of seconds, and it changes a handful of times in its life, so it is written once per
//! change and sent as is the other times.
//!
//! An answer is kept with what it was made from (the row's last change, and for a request
//! its place in the queue); one made from anything else is made again. The cache is bounded
//! like the hot rows it mirrors (`store.cache_rows`).

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use actix_web::web::Bytes;
use lru::LruCache;
use uuid::Uuid;

/// What an answer was made from: the row's `updated_at_position` and, for a request, its
/// position and estimated wait.
pub type Stamp = (u64, Option<u64>, u64);

pub struct Bodies {
    answers: Mutex<LruCache<Uuid, (Stamp, Bytes)>>,
}

impl Bodies {
    pub fn new(capacity: NonZeroUsize) -> Bodies {
        Bodies {
            answers: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The answer for `id` made from `stamp`, made now by `make` if there is none.
    pub fn get_or_make(&self, id: Uuid, stamp: Stamp, make: impl FnOnce() -> Bytes) -> Bytes {
        if let Some((kept, body)) = self
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            if *kept == stamp {
                return body.clone();
            }
        }
        let body = make();
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(id, (stamp, body.clone()));
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_made_again_when_what_it_was_made_from_changed() {
        let bodies = Bodies::new(NonZeroUsize::new(2).unwrap());
        let id = Uuid::from_u128(1);
        let made = std::cell::Cell::new(0);
        let make = |text: &'static str| {
            made.set(made.get() + 1);
            Bytes::from_static(text.as_bytes())
        };
        assert_eq!(bodies.get_or_make(id, (3, Some(2), 60), || make("a")), "a");
        assert_eq!(bodies.get_or_make(id, (3, Some(2), 60), || make("x")), "a");
        assert_eq!(made.get(), 1);
        // The queue moved: the same row, another position.
        assert_eq!(bodies.get_or_make(id, (3, Some(1), 30), || make("b")), "b");
        // The row changed.
        assert_eq!(bodies.get_or_make(id, (9, None, 0), || make("c")), "c");
        assert_eq!(made.get(), 3);
        // Bounded: two others push it out.
        bodies.get_or_make(Uuid::from_u128(2), (1, None, 0), || make("d"));
        bodies.get_or_make(Uuid::from_u128(3), (1, None, 0), || make("e"));
        assert_eq!(bodies.get_or_make(id, (9, None, 0), || make("f")), "f");
    }
}
