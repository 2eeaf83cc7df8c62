//! Load shedding: which requests the origin serves when it cannot serve them all.
//!
//! A request counts from its admission until the last of its body has been handed to the
//! connection (see [`CountedBody`]), so slow downloads and held live-edge requests weigh as
//! much as they cost. Above a threshold per priority the origin answers 503 with
//! `Retry-After`: DVR and VOD media first, live-edge rungs top first, manifests and init
//! segments last.
//!
//! Clients are shed before priorities: one client (an IP address; an IPv6 /64) may hold at
//! most `max_in_flight_per_client` requests, and while the origin is crowded (above the
//! low-priority threshold) a client holding more than its fair share (`max_in_flight` over the
//! clients with requests in flight) is refused first. So a single client holding thousands of
//! next-segment requests is refused, not everyone else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Requests in flight and live-edge requests held, over every origin in the process.
static IN_FLIGHT_ALL: AtomicUsize = AtomicUsize::new(0);
static HELD_ALL: AtomicUsize = AtomicUsize::new(0);

/// The origin's load now (for `/metrics`).
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Requests counted from admission until their body has been sent.
    pub in_flight: usize,
    /// Live-edge requests waiting for a segment that is not published yet.
    pub held: usize,
}

pub fn load() -> Load {
    Load {
        in_flight: IN_FLIGHT_ALL.load(Ordering::Relaxed),
        held: HELD_ALL.load(Ordering::Relaxed),
    }
}

/// A live-edge request waiting for its segment; counted in [`Load::held`] while it lives.
pub(crate) struct Held(());

impl Held {
    pub(crate) fn new() -> Held {
        HELD_ALL.fetch_add(1, Ordering::Relaxed);
        Held(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD_ALL.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The peer a request came from, set by the server on every request (a request extension).
/// Requests without one (in-process tests) are counted in total but not per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// How important a request is when the origin must refuse some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// Manifests, init segments, live-edge segments of undeclared renditions: refused last.
    Essential,
    /// A live-edge segment of rung `rank` (0 = top) in a ladder of `count`.
    Rung { rank: usize, count: usize },
    /// DVR segments, VOD media: refused first.
    Low,
}

/// Why a request was refused, for the log and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The client already holds `max_in_flight_per_client` requests.
    ClientCap,
    /// The origin is crowded and the client holds more than its fair share.
    FairShare,
    /// The origin is above the threshold of the request's priority.
    Load,
}

impl Reason {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::ClientCap => "client_cap",
            Reason::FairShare => "fair_share",
            Reason::Load => "load",
        }
    }
}

/// A request refused for load; answered 503 with `Retry-After`.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) retry_after: Duration,
    pub(crate) reason: Reason,
}

/// The counters behind admission, shared by every request.
pub(crate) struct Admission {
    max: usize,
    low: usize,
    per_client: usize,
    retry_after: Duration,
    in_flight: AtomicUsize,
    shed: AtomicU64,
    /// Requests in flight per client; a client with none has no entry.
    clients: Mutex<HashMap<ClientKey, usize>>,
}

/// IPv4 addresses are clients one by one; IPv6 ones by /64, the block one host is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey(u128);

impl ClientKey {
    fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(u32::from(v4) as u128),
                None => ClientKey((u128::from(v6) >> 64) << 64 | 1),
            },
        }
    }
}

impl Admission {
    pub(crate) fn new(
        max: usize,
        low: Option<usize>,
        per_client: Option<usize>,
        retry_after: Duration,
    ) -> Admission {
        // Every reason on /metrics from the start, at zero until a request is shed for it.
        for reason in [Reason::ClientCap, Reason::FairShare, Reason::Load] {
            metrics::counter!("encore_origin_refused_total", "reason" => reason.label())
                .increment(0);
        }
        Admission {
            max,
            low: low.unwrap_or(max / 2).min(max),
            per_client: per_client
                .unwrap_or_else(|| default_per_client(max))
                .clamp(1, max.max(1)),
            retry_after: retry_after.max(Duration::from_secs(1)),
            in_flight: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Clients with a request in flight.
    #[cfg(test)]
    pub(crate) fn active_clients(&self) -> usize {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn limit(&self, priority: Priority) -> usize {
        match priority {
            Priority::Essential => self.max,
            Priority::Low => self.low,
            Priority::Rung { rank, count } => {
                let count = count.max(1);
                self.low + (self.max - self.low) * (rank.min(count - 1) + 1) / count
            }
        }
    }

    /// Counts a request in, or refuses it (see the module's rules).
    pub(crate) fn admit(
        self: &Arc<Self>,
        priority: Priority,
        client: Option<ClientAddr>,
    ) -> Result<InFlight, Refused> {
        let n = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        IN_FLIGHT_ALL.fetch_add(1, Ordering::Relaxed);
        let mut guard = InFlight {
            admission: self.clone(),
            client: None,
        };
        let refused = |reason: Reason| {
            self.shed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("encore_origin_refused_total", "reason" => reason.label())
                .increment(1);
            Err(Refused {
                retry_after: self.retry_after,
                reason,
            })
        };
        if let Some(ClientAddr(ip)) = client {
            let key = ClientKey::of(ip);
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            let mine = clients.entry(key).or_insert(0);
            *mine += 1;
            let mine = *mine;
            let active = clients.len();
            drop(clients);
            guard.client = Some(key);
            if mine > self.per_client {
                return refused(Reason::ClientCap);
            }
            let fair_share = (self.max / active).max(1);
            if n > self.low && mine > fair_share {
                return refused(Reason::FairShare);
            }
        }
        if n > self.limit(priority) {
            return refused(Reason::Load);
        }
        Ok(guard)
    }
}

/// The default cap per client: an eighth of the origin, at least 64 (a player holds a few
/// requests; a CDN shield from one address may hold one per rendition and channel).
fn default_per_client(max: usize) -> usize {
    (max / 8).max(64)
}

/// One counted request; the counts drop when this does.
pub(crate) struct InFlight {
    admission: Arc<Admission>,
    client: Option<ClientKey>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("client", &self.client)
            .finish()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(key) = self.client {
            let mut clients = self
                .admission
                .clients
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = clients.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    clients.remove(&key);
                }
            }
        }
        self.admission.in_flight.fetch_sub(1, Ordering::AcqRel);
        IN_FLIGHT_ALL.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Frames handed to the connection at a time: the connection takes the next one only once its
/// write buffer has room, so the count of a slow download lasts about as long as the download.
const FRAME: usize = 64 * 1024;

/// A response body of stored bytes that keeps its request counted until the last frame is
/// taken. Frames are views of the same bytes, never copies.
pub(crate) struct CountedBody {
    rest: Bytes,
    guard: Option<InFlight>,
}

impl CountedBody {
    pub(crate) fn new(bytes: Bytes, guard: InFlight) -> CountedBody {
        let guard = (!bytes.is_empty()).then_some(guard);
        CountedBody { rest: bytes, guard }
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            self.guard = None;
            return Poll::Ready(None);
        }
        let take = self.rest.len().min(FRAME);
        let frame = self.rest.split_to(take);
        if self.rest.is_empty() {
            self.guard = None;
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn client(last: u8) -> Option<ClientAddr> {
        Some(ClientAddr(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))))
    }

    #[test]
    fn one_client_cannot_take_more_than_its_cap() {
        let a = Arc::new(Admission::new(
            100,
            Some(50),
            Some(10),
            Duration::from_secs(1),
        ));
        let held: Vec<_> = (0..10)
            .map(|_| a.admit(Priority::Essential, client(1)).unwrap())
            .collect();
        let refused = a.admit(Priority::Essential, client(1)).unwrap_err();
        assert_eq!(refused.reason, Reason::ClientCap);
        // Another client is served, and so is one without an address.
        assert!(a.admit(Priority::Essential, client(2)).is_ok());
        assert!(a.admit(Priority::Essential, None).is_ok());
        assert_eq!(a.in_flight(), 10);
        drop(held);
        assert_eq!(a.in_flight(), 0);
        assert_eq!(a.active_clients(), 0);
    }

    #[test]
    fn a_crowded_origin_refuses_the_heaviest_client_first() {
        // max 8, low 4, per client 8: client 1 takes 5 (crowded from the 5th).
        let a = Arc::new(Admission::new(8, Some(4), Some(8), Duration::from_secs(1)));
        let mut held: Vec<_> = (0..4)
            .map(|_| a.admit(Priority::Essential, client(1)).unwrap())
            .collect();
        // Client 2 arrives: two clients, fair share 4. Client 1 asking a 5th is refused...
        held.push(a.admit(Priority::Essential, client(2)).unwrap());
        let refused = a.admit(Priority::Essential, client(1)).unwrap_err();
        assert_eq!(refused.reason, Reason::FairShare);
        // ...while client 2 still gets its share.
        held.push(a.admit(Priority::Essential, client(2)).unwrap());
        held.push(a.admit(Priority::Essential, client(2)).unwrap());
        assert_eq!(a.in_flight(), 7);
    }

    #[test]
    fn ipv6_clients_are_counted_by_64_block() {
        let a = "2001:db8::1".parse::<IpAddr>().unwrap();
        let b = "2001:db8::ffff:2".parse::<IpAddr>().unwrap();
        let c = "2001:db8:0:1::1".parse::<IpAddr>().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped = "::ffff:10.0.0.1".parse::<IpAddr>().unwrap();
        assert_eq!(ClientKey::of(mapped), ClientKey::of(client(1).unwrap().0));
    }

    #[test]
    fn a_body_keeps_its_request_counted_until_its_last_frame() {
        let a = Arc::new(Admission::new(8, None, None, Duration::from_secs(1)));
        let guard = a.admit(Priority::Essential, client(1)).unwrap();
        let mut body = CountedBody::new(Bytes::from(vec![7u8; FRAME * 2 + 1]), guard);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut taken = 0;
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            let len = frame.into_data().unwrap().len();
            taken += len;
            let left = taken < FRAME * 2 + 1;
            assert_eq!(a.in_flight(), usize::from(left), "after {taken} bytes");
        }
        assert_eq!(taken, FRAME * 2 + 1);
        assert_eq!(a.active_clients(), 0);
    }
}
