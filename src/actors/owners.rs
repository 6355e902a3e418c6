//! The operator's Fragment sessions for no-KYC purchases: one pool that the core (pricing,
//! eligibility) and the dispatcher (payments) both read, and that the admin API replaces at
//! runtime. Cookies live only here and in the sessions made from them, never in events.
//!
//! A replacement swaps the list; it never touches a session in use. Whoever took a session
//! from the old list (a running payment) holds its own handle and finishes on it; new work
//! takes sessions from the new list. A session's cookies are wiped once the last handle to
//! it is dropped.

use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::fragment::client::SessionId;
use crate::fragment::{FragmentClient, FragmentCookies, FragmentSession, SessionRole};

/// One operator session of the pool.
#[derive(Clone)]
pub struct OwnerSession {
    /// Which Fragment session this is (`FragmentSession::id`: a keyed digest of its
    /// `stel_ssid`, the cookie Fragment keeps a session's state under). It stays the same
    /// across replacements, so the dispatcher, which runs one payment per session, does not
    /// start a second payment on a session that a payment from before the replacement is
    /// still using — whatever the session's position in the new list.
    pub lane: SessionId,
    pub session: FragmentSession,
    /// Keyed digest of the whole cookie set: an identical set sent again keeps its session
    /// (and the API hash that session has cached) instead of starting a new one. A set with
    /// the same `stel_ssid` but other cookies (a refreshed token) becomes a new session
    /// object on the same lane: payments never overlap on it, but a price lookup on the new
    /// object could overlap a Fragment step of a payment still finishing on the old one.
    cookies_digest: [u8; 32],
}

/// What a replacement did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// Sessions in the pool now.
    pub sessions: usize,
    /// Sessions in the pool before.
    pub previous: usize,
    /// Sessions of the new list that were already in the pool with identical cookies, and
    /// kept their state.
    pub kept: usize,
    /// Cookie sets left out because an earlier one in the list is the same Fragment session
    /// (same `stel_ssid`): one session cannot buy twice at a time.
    pub duplicates: usize,
}

pub struct OwnerPool {
    client: FragmentClient,
    /// Why a lock around an `Arc`: readers take the current list in one short read and work
    /// on it without holding the lock; a replacement is one short write.
    current: RwLock<Arc<[OwnerSession]>>,
    /// Random per process: the digests identify sessions within this process only and say
    /// nothing about the cookies to anyone without this key.
    digest_key: [u8; 32],
}

impl OwnerPool {
    pub fn new(client: FragmentClient, cookies: Vec<FragmentCookies>) -> OwnerPool {
        let mut digest_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut digest_key);
        let pool = OwnerPool {
            client,
            current: RwLock::new(Arc::from(Vec::new())),
            digest_key,
        };
        pool.replace(cookies);
        pool
    }

    /// The current sessions (a snapshot: a later replacement does not change it).
    pub fn sessions(&self) -> Arc<[OwnerSession]> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes `cookies` the operator's sessions, in this order.
    pub fn replace(&self, cookies: Vec<FragmentCookies>) -> Replaced {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let mut next: Vec<OwnerSession> = Vec::with_capacity(cookies.len());
        let (mut kept, mut duplicates) = (0, 0);
        for c in cookies {
            let lane = self.client.session_id(&c);
            if next.iter().any(|s| s.lane == lane) {
                duplicates += 1;
                continue;
            }
            let cookies_digest = self.digest(b"cookies", c.header().as_bytes());
            match current.iter().find(|s| s.cookies_digest == cookies_digest) {
                Some(same) => {
                    kept += 1;
                    next.push(same.clone());
                }
                None => next.push(OwnerSession {
                    lane,
                    session: self.client.session(c, SessionRole::Owner),
                    cookies_digest,
                }),
            }
        }
        let replaced = Replaced {
            sessions: next.len(),
            previous: current.len(),
            kept,
            duplicates,
        };
        *current = Arc::from(next);
        replaced
    }

    fn digest(&self, domain: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.digest_key).expect("any key length");
        mac.update(domain);
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;
    use crate::fragment::client::FragmentConfig;

    fn cookies(ssid: &str, token: &str) -> FragmentCookies {
        let mut c = FragmentCookies::default();
        for (n, v) in [
            ("stel_ssid", ssid),
            ("stel_token", token),
            ("stel_ton_token", "t"),
        ] {
            c.set(n, Zeroizing::new(v.to_string())).unwrap();
        }
        c
    }

    fn pool(list: Vec<FragmentCookies>) -> OwnerPool {
        OwnerPool::new(
            FragmentClient::new(FragmentConfig::fragment_com()).unwrap(),
            list,
        )
    }

    #[test]
    fn a_replacement_keeps_identical_sessions_and_lanes_follow_the_fragment_session() {
        let p = pool(vec![cookies("a", "1"), cookies("b", "1")]);
        let before = p.sessions();
        assert_eq!(before.len(), 2);
        assert_ne!(before[0].lane, before[1].lane);

        // `b` again, unchanged; `a` logged in again (same session id, new token); `c` new.
        let r = p.replace(vec![
            cookies("b", "1"),
            cookies("a", "2"),
            cookies("c", "1"),
            cookies("c", "9"),
        ]);
        assert_eq!(
            r,
            Replaced {
                sessions: 3,
                previous: 2,
                kept: 1,
                duplicates: 1
            }
        );
        let after = p.sessions();
        // The snapshot taken before is unchanged: work holding it finishes on it.
        assert_eq!(before.len(), 2);
        assert_eq!(after[0].lane, before[1].lane);
        assert_eq!(after[0].cookies_digest, before[1].cookies_digest);
        // Same Fragment session, new cookies: a new session object on the same lane.
        assert_eq!(after[1].lane, before[0].lane);
        assert_ne!(after[1].cookies_digest, before[0].cookies_digest);
        assert!(!before.iter().any(|s| s.lane == after[2].lane));

        let r = p.replace(vec![]);
        assert_eq!((r.sessions, r.previous), (0, 3));
        assert!(p.is_empty());
    }
}
