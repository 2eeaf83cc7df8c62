//! Player telemetry: Common Media Client Data (CTA-5004), which hls.js, dash.js, Shaka and
//! AVPlayer send with each request, in the `CMCD` query parameter or the `CMCD-Request`,
//! `CMCD-Object`, `CMCD-Status` and `CMCD-Session` headers, as `key=value` pairs separated by
//! commas (`br=3200,bl=12000,bs,sid="6e2f…",ot=v`).
//!
//! The origin turns it into quality-of-experience series on `/metrics`: sessions active
//! (distinct `sid` seen in the last minute), startup requests (`su`), buffer starvation (`bs`:
//! events, and sessions that starved in the last minute), the buffer length (`bl`), measured
//! throughput (`mtp`) and encoded bitrate (`br`) distributions, and requests by rendition.
//! Malformed CMCD is counted and ignored: it never changes the player's response.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// Sessions remembered at most: beyond, the oldest are forgotten (a client inventing a new
/// `sid` per request cannot grow memory).
const SESSIONS_MAX: usize = 100_000;
/// A session is active while it made a request in this window.
const ACTIVE: Duration = Duration::from_secs(60);
/// CMCD longer than this is malformed (the keys defined fit in a few hundred bytes).
const CMCD_MAX_LEN: usize = 4096;

pub const BUFFER_BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 30.0, 60.0];
pub const KBPS_BUCKETS: [f64; 12] = [
    100.0, 250.0, 500.0, 1_000.0, 2_000.0, 3_000.0, 5_000.0, 8_000.0, 12_000.0, 20_000.0, 50_000.0,
    100_000.0,
];

/// The keys Encore reads; the others are accepted and ignored.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cmcd {
    /// Encoded bitrate of the object, kbps.
    pub br: Option<u64>,
    /// Buffer length, ms.
    pub bl: Option<u64>,
    /// The buffer ran empty since the last request.
    pub bs: bool,
    /// Measured throughput, kbps.
    pub mtp: Option<u64>,
    /// The object is needed urgently: startup, seek or recovery from a stall.
    pub su: bool,
    pub sid: Option<String>,
    pub cid: Option<String>,
    /// Object type: m (manifest), a, v, av, i (init), c (captions), tt, k, o.
    pub ot: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Parses one CMCD text (the query parameter's value, or the four headers joined by commas).
pub fn parse(text: &str) -> Result<Cmcd, Malformed> {
    if text.len() > CMCD_MAX_LEN {
        return Err(Malformed);
    }
    let mut cmcd = Cmcd::default();
    for (key, value) in pairs(text)? {
        let int = || -> Result<u64, Malformed> {
            let v = value.ok_or(Malformed)?;
            v.parse::<u64>().map_err(|_| Malformed)
        };
        let string = || -> Result<String, Malformed> {
            match value {
                Some(v) if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') => {
                    unquote(&v[1..v.len() - 1])
                }
                _ => Err(Malformed),
            }
        };
        let flag = || match value {
            None | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(Malformed),
        };
        match key {
            "br" => cmcd.br = Some(int()?),
            "bl" => cmcd.bl = Some(int()?),
            "mtp" => cmcd.mtp = Some(int()?),
            "bs" => cmcd.bs = flag()?,
            "su" => cmcd.su = flag()?,
            "sid" => cmcd.sid = Some(string()?),
            "cid" => cmcd.cid = Some(string()?),
            "ot" => match value {
                Some(t) if t.chars().all(|c| c.is_ascii_lowercase()) && t.len() <= 2 => {
                    cmcd.ot = Some(t.to_string())
                }
                _ => return Err(Malformed),
            },
            _ if key.is_empty() => return Err(Malformed),
            // Other keys (d, dl, nor, nrr, pr, rtp, sf, st, tb, v, custom `x-…`): not read.
            _ => {}
        }
    }
    Ok(cmcd)
}

/// `key[=value]` pairs, split on the commas outside quoted strings.
fn pairs(text: &str) -> Result<Vec<(&str, Option<&str>)>, Malformed> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    let bytes = text.as_bytes();
    for i in 0..=bytes.len() {
        let c = bytes.get(i).copied();
        if quoted {
            match c {
                None => return Err(Malformed),
                Some(b'\\') if !escaped => escaped = true,
                Some(b'"') if !escaped => quoted = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            Some(b'"') => quoted = true,
            Some(b',') | None => {
                let item = text[start..i].trim();
                start = i + 1;
                if item.is_empty() {
                    if c.is_none() && out.is_empty() {
                        break; // empty CMCD: nothing sent
                    }
                    return Err(Malformed);
                }
                let (key, value) = match item.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (item, None),
                };
                let key_ok = key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !key_ok {
                    return Err(Malformed);
                }
                out.push((key, value));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn unquote(inner: &str) -> Result<String, Malformed> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or(Malformed)?),
            '"' => return Err(Malformed),
            c => out.push(c),
        }
    }
    if out.len() > 64 {
        return Err(Malformed); // sid and cid are at most 64 characters
    }
    Ok(out)
}

/// The CMCD of a request: the `CMCD` query parameter (percent-encoded), else the headers.
/// `None` when it sent none.
pub fn of_request(query: Option<&str>, headers: &HeaderMap) -> Option<Result<Cmcd, Malformed>> {
    if let Some(query) = query {
        for pair in query.split('&') {
            if let Some(value) = pair.strip_prefix("CMCD=") {
                return Some(match percent_decode(value) {
                    Some(text) => parse(&text),
                    None => Err(Malformed),
                });
            }
        }
    }
    let mut parts = Vec::new();
    for name in ["cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session"] {
        for value in headers.get_all(name) {
            match value.to_str() {
                Ok(v) if !v.trim().is_empty() => parts.push(v.trim().to_string()),
                Ok(_) => {}
                Err(_) => return Some(Err(Malformed)),
            }
        }
    }
    (!parts.is_empty()).then(|| parse(&parts.join(",")))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Sessions seen lately: when each last made a request and last starved, and the live channel
/// it last fetched from.
#[derive(Default)]
pub struct Sessions {
    seen: Mutex<HashMap<String, (Instant, Option<Instant>)>>,
    channels: Mutex<HashMap<String, String>>,
}

impl Sessions {
    fn touch(&self, sid: &str, starved: bool, channel: Option<&str>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if seen.len() >= SESSIONS_MAX && !seen.contains_key(sid) {
            seen.retain(|_, (last, _)| now.duration_since(*last) < ACTIVE);
            self.channels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|sid, _| seen.contains_key(sid));
            if seen.len() >= SESSIONS_MAX {
                return;
            }
        }
        let entry = seen.entry(sid.to_string()).or_insert((now, None));
        entry.0 = now;
        if starved {
            entry.1 = Some(now);
        }
        drop(seen);
        // Only sessions kept above: the two maps are bounded together.
        if let Some(channel) = channel {
            self.channels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(sid.to_string(), channel.to_string());
        }
    }

    /// (sessions active, of which starved in the window); forgets the old ones.
    pub fn counts(&self) -> (usize, usize) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        seen.retain(|_, (last, _)| now.duration_since(*last) < ACTIVE);
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|sid, _| seen.contains_key(sid));
        let starved = seen
            .values()
            .filter(|(_, s)| s.is_some_and(|s| now.duration_since(s) < ACTIVE))
            .count();
        (seen.len(), starved)
    }
}

impl Sessions {
    /// Active sessions per live channel (after [`Sessions::counts`] has forgotten the old).
    pub fn viewers_by_channel(&self) -> HashMap<String, usize> {
        let mut viewers = HashMap::new();
        for channel in self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            *viewers.entry(channel.clone()).or_insert(0) += 1;
        }
        viewers
    }
}

pub fn sessions() -> &'static Sessions {
    static SESSIONS: std::sync::OnceLock<Sessions> = std::sync::OnceLock::new();
    SESSIONS.get_or_init(Sessions::default)
}

/// Records a request's CMCD. `rendition` is the folder of a media object that was served
/// (`720p`, `audio`) and `channel` the live channel it came from, so their values are the
/// package's, never the client's.
pub fn record(cmcd: Result<Cmcd, Malformed>, rendition: Option<&str>, channel: Option<&str>) {
    let Ok(cmcd) = cmcd else {
        metrics::counter!("encore_cmcd_malformed_total").increment(1);
        return;
    };
    metrics::counter!("encore_cmcd_requests_total").increment(1);
    if let Some(sid) = &cmcd.sid {
        sessions().touch(sid, cmcd.bs, channel);
    }
    if cmcd.su {
        metrics::counter!("encore_qoe_startup_requests_total").increment(1);
    }
    if cmcd.bs {
        metrics::counter!("encore_qoe_buffer_starvations_total").increment(1);
    }
    if let Some(bl) = cmcd.bl {
        metrics::histogram!("encore_qoe_buffer_length_seconds").record(bl as f64 / 1000.0);
    }
    if let Some(mtp) = cmcd.mtp {
        metrics::histogram!("encore_qoe_measured_throughput_kbps").record(mtp as f64);
    }
    if let Some(br) = cmcd.br {
        metrics::histogram!("encore_qoe_bitrate_kbps").record(br as f64);
        if let Some(rendition) = rendition {
            metrics::counter!("encore_qoe_requests_by_rendition_total", "rendition" => rendition.to_string())
                .increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_examples_parse() {
        let c = parse(r#"br=3200,bs,d=4004,mtp=25400,ot=v,rtp=15000,sid="6e2fb550-c457-11e9-bb97-0800200c9a66",tb=6000"#).unwrap();
        assert_eq!(c.br, Some(3200));
        assert!(c.bs && !c.su);
        assert_eq!(c.mtp, Some(25400));
        assert_eq!(c.ot.as_deref(), Some("v"));
        assert_eq!(
            c.sid.as_deref(),
            Some("6e2fb550-c457-11e9-bb97-0800200c9a66")
        );
        // A comma and an escaped quote inside a string.
        let c = parse(r#"cid="a,b\"c",su,bl=21300"#).unwrap();
        assert_eq!(c.cid.as_deref(), Some(r#"a,b"c"#));
        assert!(c.su);
        assert_eq!(c.bl, Some(21300));
        assert_eq!(parse(""), Ok(Cmcd::default()));
        let q = "CMCD=bl%3D21300%2Cbr%3D3200%2Csid%3D%226e2f%22";
        let c = of_request(Some(q), &HeaderMap::new()).unwrap().unwrap();
        assert_eq!(
            (c.bl, c.br, c.sid.as_deref()),
            (Some(21300), Some(3200), Some("6e2f"))
        );
    }

    #[test]
    fn malformed_cmcd_is_refused_whole() {
        for bad in [
            "br=abc",
            "br=-1",
            "sid=unquoted",
            r#"sid="open"#,
            "bl",
            "br=1,,bl=2",
            "BR=1",
            "ot=video",
            "bs=maybe",
            r#"sid="0123456789012345678901234567890123456789012345678901234567890123456789""#,
            ",",
            "=1",
        ] {
            assert_eq!(parse(bad), Err(Malformed), "{bad}");
        }
        assert_eq!(parse(&"x".repeat(5000)), Err(Malformed));
        assert!(matches!(
            of_request(Some("CMCD=%zz"), &HeaderMap::new()),
            Some(Err(Malformed))
        ));
        assert!(of_request(Some("a=b"), &HeaderMap::new()).is_none());
    }

    /// Whatever the bytes, parsing returns (never panics).
    #[test]
    fn any_text_parses_or_is_refused() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = br#"abr=,"\ sid0123456789%x-ot"#;
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push(alphabet[(seed % alphabet.len() as u64) as usize] as char);
            }
            let _ = parse(&s);
            let _ = of_request(Some(&format!("CMCD={s}")), &HeaderMap::new());
        }
    }

    #[test]
    fn sessions_are_bounded_and_counted() {
        let sessions = Sessions::default();
        sessions.touch("a", false, Some("news"));
        sessions.touch("b", true, Some("news"));
        sessions.touch("a", false, Some("news"));
        sessions.touch("c", false, Some("sport"));
        sessions.touch("d", false, None);
        assert_eq!(sessions.counts(), (4, 1));
        let viewers = sessions.viewers_by_channel();
        assert_eq!(viewers.get("news"), Some(&2));
        assert_eq!(viewers.get("sport"), Some(&1));
    }
}
