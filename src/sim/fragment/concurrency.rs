//! A detector of clients that run purchase flows concurrently on one session.
//!
//! fragment.com keeps one current purchase per session (`stel_ssid`): the state methods
//! report "the" request, and a second search/init on a session replaces what the first
//! was building. A client that runs two flows on one session at once is therefore broken,
//! but the real site would not say so: it answers every request. Neither does the
//! simulator; it only counts, so that tests can assert that it never happened.
//!
//! Two measures:
//! - how many `/api` requests of one session were in flight at the same moment (any
//!   method: even a state poll racing an init shows a client not taking turns);
//! - overlapping flows: a `search…Recipient` or `init…Request` arriving on a session whose
//!   last successful `init…Request` has not yet been followed by a `get…Link` for its
//!   request. A link request closes the flow when it arrives, whatever its answer (an
//!   injected 503 included), since the client did move on. A client that abandons a flow
//!   after init and starts another on the same session is counted too: to the site the
//!   two are indistinguishable.
//!
//! Requests are attributed to the `stel_ssid` cookie they carry, recognised by the site or
//! not. Pure bookkeeping: the HTTP layer calls it.

use std::collections::HashMap;

#[derive(Debug, Default)]
struct SessionLoad {
    in_flight: u32,
    max_in_flight: u32,
    /// The request id of the flow between its init and its link request.
    open_flow: Option<String>,
}

#[derive(Debug, Default)]
pub struct ConcurrencyWatch {
    sessions: HashMap<String, SessionLoad>,
    overlaps: u64,
}

/// Which step of a purchase flow an `/api` method is.
fn step(method: &str) -> Option<Step> {
    match method {
        "searchStarsRecipient" | "searchPremiumGiftRecipient" => Some(Step::Search),
        "initBuyStarsRequest" | "initGiftPremiumRequest" => Some(Step::Init),
        "getBuyStarsLink" | "getGiftPremiumLink" => Some(Step::Link),
        _ => None,
    }
}

/// Whether `method` opens a purchase flow (`init…Request`).
pub(super) fn is_init(method: &str) -> bool {
    step(method) == Some(Step::Init)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Search,
    Init,
    Link,
}

impl ConcurrencyWatch {
    /// An `/api` request of `ssid` arrived (before any fault applies): counts it in flight
    /// and checks it against the session's open flow. `id` is the form's `id` field.
    pub fn arrived(&mut self, ssid: &str, method: Option<&str>, id: Option<&str>) {
        let s = self.sessions.entry(ssid.to_string()).or_default();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        match method.and_then(step) {
            Some(Step::Search | Step::Init) if s.open_flow.is_some() => self.overlaps += 1,
            Some(Step::Link) if id.is_some() && s.open_flow.as_deref() == id => {
                s.open_flow = None;
            }
            _ => {}
        }
    }

    /// The request of `ssid` was answered (or abandoned).
    pub fn finished(&mut self, ssid: &str) {
        if let Some(s) = self.sessions.get_mut(ssid) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }

    /// An init of `ssid` created request `req_id`: the flow is open until its link request.
    pub fn initiated(&mut self, ssid: &str, req_id: &str) {
        self.sessions.entry(ssid.to_string()).or_default().open_flow = Some(req_id.to_string());
    }

    /// The session ended at the site: a flow left open on it is over, not overlapping the
    /// next one (which needs a new session).
    pub fn session_ended(&mut self, ssid: &str) {
        if let Some(s) = self.sessions.get_mut(ssid) {
            s.open_flow = None;
        }
    }

    pub fn overlaps(&self) -> u64 {
        self.overlaps
    }

    pub fn max_in_flight(&self, ssid: &str) -> u32 {
        self.sessions.get(ssid).map_or(0, |s| s.max_in_flight)
    }

    /// `/api` requests being answered right now, on every session.
    pub fn in_flight(&self) -> u32 {
        self.sessions.values().map(|s| s.in_flight).sum()
    }

    /// The highest `max_in_flight` of any session.
    pub fn max_in_flight_any(&self) -> u32 {
        self.sessions
            .values()
            .map(|s| s.max_in_flight)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(w: &mut ConcurrencyWatch, ssid: &str, method: &str, id: Option<&str>) {
        w.arrived(ssid, Some(method), id);
        w.finished(ssid);
    }

    #[test]
    fn one_flow_after_another_is_no_overlap() {
        let mut w = ConcurrencyWatch::default();
        for req in ["r1", "r2"] {
            request(&mut w, "s", "updateStarsBuyState", None);
            request(&mut w, "s", "searchStarsRecipient", None);
            // A failed init ("Price was changed") opens nothing; the retry does.
            request(&mut w, "s", "initBuyStarsRequest", None);
            request(&mut w, "s", "initBuyStarsRequest", None);
            w.initiated("s", req);
            request(&mut w, "s", "getBuyStarsLink", Some(req));
            request(&mut w, "s", "confirmReq", Some(req));
            request(&mut w, "s", "updateStarsBuyState", Some(req));
        }
        assert_eq!(w.overlaps(), 0);
        assert_eq!(w.max_in_flight("s"), 1);
    }

    #[test]
    fn a_second_flow_before_the_first_ones_link_is_counted() {
        let mut w = ConcurrencyWatch::default();
        request(&mut w, "s", "searchStarsRecipient", None);
        request(&mut w, "s", "initBuyStarsRequest", None);
        w.initiated("s", "a");
        // Another flow on the same session: its search and init both overlap.
        request(&mut w, "s", "searchPremiumGiftRecipient", None);
        request(&mut w, "s", "initGiftPremiumRequest", None);
        w.initiated("s", "b");
        // The first flow's link does not close the second one's.
        request(&mut w, "s", "getBuyStarsLink", Some("a"));
        request(&mut w, "s", "searchStarsRecipient", None);
        assert_eq!(w.overlaps(), 3);
        // Another session is not affected by this one's open flow.
        request(&mut w, "t", "searchStarsRecipient", None);
        assert_eq!(w.overlaps(), 3);
        // Once the session is gone, its open flow is too.
        w.session_ended("s");
        request(&mut w, "s", "searchStarsRecipient", None);
        assert_eq!(w.overlaps(), 3);
    }

    #[test]
    fn requests_in_flight_together_are_measured_per_session() {
        let mut w = ConcurrencyWatch::default();
        w.arrived("s", Some("searchStarsRecipient"), None);
        w.arrived("s", Some("updateStarsBuyState"), None);
        w.arrived("t", Some("searchStarsRecipient"), None);
        w.finished("s");
        w.arrived("s", None, None);
        w.finished("s");
        w.finished("s");
        w.finished("t");
        assert_eq!(w.max_in_flight("s"), 2);
        assert_eq!(w.max_in_flight("t"), 1);
        assert_eq!(w.max_in_flight("unknown"), 0);
        assert_eq!(w.max_in_flight_any(), 2);
    }
}
