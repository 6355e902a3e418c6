//! The hot rows: orders and requests clients are polling, kept in memory up to a bound so a
//! poll answers without a database round trip.
//!
//! Why it can never serve a row older than the tables: the projection runner is the only
//! writer of the tables, and after every commit it puts every row the batch changed into the
//! cache (`stored`), before it announces the new position. A reader that missed reads the
//! row from the tables and offers it (`offer_*`) with the cache's generation from before its
//! read; the offer is refused if a batch was stored in between, since the row read may be
//! older than what that batch wrote. So every cached row equals its row in the tables as of
//! the last announced position (or a later one), which is also what lets the runner take a
//! batch's rows from here instead of the tables.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lru::LruCache;
use projections::{OrderView, RequestView};
use uuid::Uuid;

use super::{RowKeys, RowSet, RowSource};

pub struct HotRows {
    inner: Mutex<Inner>,
}

struct Inner {
    orders: LruCache<Uuid, Arc<OrderView>>,
    requests: LruCache<Uuid, Arc<RequestView>>,
    /// Moves with every batch stored.
    generation: u64,
}

impl HotRows {
    /// At most `capacity` orders and as many requests.
    pub fn new(capacity: NonZeroUsize) -> HotRows {
        HotRows {
            inner: Mutex::new(Inner {
                orders: LruCache::new(capacity),
                requests: LruCache::new(capacity),
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn order(&self, id: &Uuid) -> Option<Arc<OrderView>> {
        self.lock().orders.get(id).cloned()
    }

    pub fn request(&self, id: &Uuid) -> Option<Arc<RequestView>> {
        self.lock().requests.get(id).cloned()
    }

    /// Take it before reading a row from the tables, and give it back with the offer.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// A row read from the tables after `generation` was taken: kept if no batch was
    /// stored since.
    pub fn offer_order(&self, generation: u64, order: Arc<OrderView>) {
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.orders.put(order.order_id, order);
        }
    }

    pub fn offer_request(&self, generation: u64, request: Arc<RequestView>) {
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.requests.put(request.request_id, request);
        }
    }

    /// A batch's changed rows, just committed: they replace what was cached.
    pub fn stored(&self, rows: &RowSet) {
        let mut inner = self.lock();
        inner.generation += 1;
        for o in &rows.orders {
            inner.orders.put(o.order_id, Arc::new(o.clone()));
        }
        for r in &rows.requests {
            inner.requests.put(r.request_id, Arc::new(r.clone()));
        }
    }

    /// Forgets everything (the tables were replaced or reloaded).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.orders.clear();
        inner.requests.clear();
    }

    pub fn len(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.orders.len(), inner.requests.len())
    }
}

impl RowSource for HotRows {
    fn take_known(&self, keys: &mut RowKeys) -> RowSet {
        let inner = self.lock();
        let mut known = RowSet::default();
        keys.orders.retain(|id| match inner.orders.peek(id) {
            Some(o) => {
                known.orders.push(OrderView::clone(o));
                false
            }
            None => true,
        });
        keys.requests.retain(|id| match inner.requests.peek(id) {
            Some(r) => {
                known.requests.push(RequestView::clone(r));
                false
            }
            None => true,
        });
        known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(n: u128, status: &str) -> OrderView {
        serde_json::from_value(serde_json::json!({
            "order_id": Uuid::from_u128(n),
            "product": {"type": "stars", "amount": 50},
            "username": "alice",
            "mode": "no_kyc",
            "status": status,
            "price_nanoton": 1,
            "commission_rate": "0.01",
            "commission_nanoton": 0,
            "total_nanoton": 1,
            "created_at": "2026-12-01T00:00:00Z",
            "expires_at": "2026-12-01T00:10:00Z",
            "wallet_address": null,
            "request_id": null,
            "tx_hash": null,
            "error_code": null,
            "error": null,
            "completed_at": null,
            "delivery_confirmed": null,
            "updated_at_position": 1,
        }))
        .expect("an order view")
    }

    /// A reader that read a row before a batch changed it must not put its older copy back.
    #[test]
    fn an_offer_from_before_a_stored_batch_is_refused() {
        let cache = HotRows::new(NonZeroUsize::new(4).unwrap());
        let id = Uuid::from_u128(1);
        let before = cache.generation();
        // The runner stores a batch that changed the row, and the cache is small enough to
        // have let it go again.
        cache.stored(&RowSet {
            orders: vec![order(1, "success")],
            ..RowSet::default()
        });
        for n in 2..=5 {
            cache.stored(&RowSet {
                orders: vec![order(n, "created")],
                ..RowSet::default()
            });
        }
        assert!(cache.order(&id).is_none(), "evicted");
        cache.offer_order(before, Arc::new(order(1, "queued")));
        assert!(cache.order(&id).is_none(), "a stale row was cached");
        let now = cache.generation();
        cache.offer_order(now, Arc::new(order(1, "success")));
        assert_eq!(cache.order(&id).unwrap().status, "success");
    }

    #[test]
    fn it_holds_at_most_its_capacity_and_lends_rows_to_a_fold() {
        let cache = HotRows::new(NonZeroUsize::new(2).unwrap());
        for n in 1..=3 {
            cache.stored(&RowSet {
                orders: vec![order(n, "created")],
                ..RowSet::default()
            });
        }
        assert_eq!(cache.len(), (2, 0));
        let mut keys = RowKeys::default();
        keys.orders.extend([Uuid::from_u128(1), Uuid::from_u128(3)]);
        let known = cache.take_known(&mut keys);
        assert_eq!(known.orders.len(), 1);
        assert_eq!(known.orders[0].order_id, Uuid::from_u128(3));
        assert_eq!(
            keys.orders.iter().copied().collect::<Vec<_>>(),
            [Uuid::from_u128(1)]
        );
    }
}
