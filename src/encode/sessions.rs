//! Encode-session caps: how many encoder sessions a hardware engine may have open at once.
//!
//! NVIDIA's consumer drivers allow 8 NVENC sessions per system; datacenter cards have no cap.
//! Each rung of a ladder is one session, so a ladder is admitted whole or not at all: selection
//! checks [`SessionPool::available`] before opening a ladder, and every encoder holds a
//! [`Session`] that gives its slot back when the encoder is dropped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// Open sessions and the cap of one engine kind, process-wide.
#[derive(Debug)]
pub struct SessionPool {
    name: &'static str,
    /// `u32::MAX` = no cap.
    cap: AtomicU32,
    open: AtomicU32,
    /// Finds the cap (e.g. from the GPU's hw-profile) before it is first needed.
    discover: Option<fn() -> Option<u32>>,
    discovered: Once,
}

impl SessionPool {
    pub const fn new(name: &'static str) -> Self {
        SessionPool {
            name,
            cap: AtomicU32::new(u32::MAX),
            open: AtomicU32::new(0),
            discover: None,
            discovered: Once::new(),
        }
    }

    /// A pool whose cap `discover` finds the first time it is asked for.
    pub const fn discovered_by(name: &'static str, discover: fn() -> Option<u32>) -> Self {
        let mut pool = SessionPool::new(name);
        pool.discover = Some(discover);
        pool
    }

    /// Sets the cap (`None`: unlimited). Sessions already open stay open.
    pub fn set_cap(&self, cap: Option<u32>) {
        self.discovered.call_once(|| {});
        self.cap.store(cap.unwrap_or(u32::MAX), Ordering::SeqCst);
    }

    pub fn cap(&self) -> Option<u32> {
        self.discovered.call_once(|| {
            if let Some(cap) = self.discover.and_then(|discover| discover()) {
                self.cap.store(cap, Ordering::SeqCst);
            }
        });
        match self.cap.load(Ordering::SeqCst) {
            u32::MAX => None,
            n => Some(n),
        }
    }

    pub fn open(&self) -> u32 {
        self.open.load(Ordering::SeqCst)
    }

    /// Sessions that can still be opened (`u32::MAX` when there is no cap).
    pub fn available(&self) -> u32 {
        match self.cap() {
            None => u32::MAX,
            Some(cap) => cap.saturating_sub(self.open()),
        }
    }

    /// Why `needed` more sessions cannot be opened now, or `None` when they can.
    pub fn refusal(&self, needed: u32) -> Option<String> {
        let cap = self.cap()?;
        if cap == 0 {
            return Some(format!("no {} engine on this GPU", self.name));
        }
        (self.available() < needed).then(|| {
            format!(
                "{} session cap reached ({} of {cap} open, {needed} needed)",
                self.name,
                self.open()
            )
        })
    }

    /// Takes one slot, or says why not.
    pub fn acquire(&'static self) -> Result<Session, String> {
        let cap = self.cap().unwrap_or(u32::MAX);
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < cap).then_some(open + 1)
            })
            .map(|_| Session(self))
            .map_err(|_| self.refusal(1).unwrap_or_default())
    }
}

/// One open session; the slot is given back on drop.
#[derive(Debug)]
pub struct Session(&'static SessionPool);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_counted_and_given_back() {
        static POOL: SessionPool = SessionPool::new("test");
        assert_eq!(POOL.available(), u32::MAX);
        assert!(POOL.refusal(100).is_none());
        POOL.set_cap(Some(3));
        let a = POOL.acquire().unwrap();
        let b = POOL.acquire().unwrap();
        assert_eq!((POOL.open(), POOL.available()), (2, 1));
        assert_eq!(
            POOL.refusal(2).unwrap(),
            "test session cap reached (2 of 3 open, 2 needed)"
        );
        let c = POOL.acquire().unwrap();
        let e = POOL.acquire().unwrap_err();
        assert!(e.contains("3 of 3 open"), "{e}");
        drop((a, b, c));
        assert_eq!(POOL.open(), 0);
        assert_eq!(POOL.available(), 3);
    }

    #[test]
    fn the_cap_is_discovered_before_the_first_check() {
        static NONE: SessionPool = SessionPool::discovered_by("X", || Some(0));
        assert_eq!(NONE.refusal(1).unwrap(), "no X engine on this GPU");
        assert!(NONE.acquire().is_err());
        static EIGHT: SessionPool = SessionPool::discovered_by("Y", || Some(8));
        assert_eq!(
            EIGHT.refusal(9).unwrap(),
            "Y session cap reached (0 of 8 open, 9 needed)"
        );
    }
}
