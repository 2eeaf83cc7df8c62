//! HLS as a player reads it: the multivariant playlist once (a variant, and its audio
//! rendition), then each media playlist reloaded on the schedule of RFC 8216 §6.3.4 (one target
//! duration after the last load began, half of one when nothing changed), segments taken in
//! media-sequence order from three before the live edge, as hls.js does by default.
//!
//! The parser reads only what a player needs and is cheap on purpose: a run reloads thousands
//! of playlists a second, and the load generator must not be what saturates first.

use std::time::{Duration, Instant};

use reqwest::Url;

use super::http::Client;
use super::stats::Kind;
use super::{Next, Rendition, Segment, LIVE_START_SEGMENTS};

/// A multivariant playlist: what a player chooses from.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterPlaylist {
    pub variants: Vec<Variant>,
    /// `EXT-X-MEDIA` renditions of `TYPE=AUDIO` that have their own playlist.
    pub audio: Vec<AudioRendition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    pub bandwidth: u64,
    pub audio_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioRendition {
    pub group: String,
    pub uri: String,
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    pub target_duration: f64,
    pub media_sequence: u64,
    pub entries: Vec<Entry>,
    /// `EXT-X-ENDLIST`: nothing will be added.
    pub ended: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub uri: String,
    pub duration: f64,
    /// `EXT-X-GAP`: listed but not there; players skip it.
    pub gap: bool,
    /// The `EXT-X-MAP` URI in effect.
    pub map: Option<String>,
}

pub enum Playlist {
    Master(MasterPlaylist),
    Media(MediaPlaylist),
}

/// Reads either kind of playlist.
pub fn parse(text: &str) -> Result<Playlist, String> {
    if !text.trim_start_matches('\u{feff}').starts_with("#EXTM3U") {
        return Err("not an HLS playlist (no #EXTM3U)".into());
    }
    if text.contains("#EXT-X-STREAM-INF") {
        parse_master(text).map(Playlist::Master)
    } else {
        parse_media(text).map(Playlist::Media)
    }
}

fn parse_master(text: &str) -> Result<MasterPlaylist, String> {
    let mut variants = Vec::new();
    let mut audio = Vec::new();
    let mut pending: Option<Vec<(&str, &str)>> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            pending = Some(attributes(attrs));
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-MEDIA:") {
            let a = attributes(attrs);
            let get = |k: &str| a.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
            if let (Some("AUDIO"), Some(group), Some(uri)) =
                (get("TYPE"), get("GROUP-ID"), get("URI"))
            {
                audio.push(AudioRendition {
                    group: group.into(),
                    uri: uri.into(),
                    default: get("DEFAULT") == Some("YES"),
                });
            }
        } else if !line.starts_with('#') {
            if let Some(a) = pending.take() {
                let get = |k: &str| a.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
                let bandwidth = get("BANDWIDTH")
                    .and_then(|b| b.parse().ok())
                    .ok_or_else(|| format!("variant {line}: no BANDWIDTH"))?;
                variants.push(Variant {
                    uri: line.into(),
                    bandwidth,
                    audio_group: get("AUDIO").map(String::from),
                });
            }
        }
    }
    if variants.is_empty() {
        return Err("a multivariant playlist without variants".into());
    }
    Ok(MasterPlaylist { variants, audio })
}

fn parse_media(text: &str) -> Result<MediaPlaylist, String> {
    let mut p = MediaPlaylist {
        target_duration: 0.0,
        media_sequence: 0,
        entries: Vec::new(),
        ended: false,
    };
    let (mut duration, mut gap, mut map) = (None, false, None::<String>);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_duration = v
                .parse()
                .map_err(|_| format!("bad EXT-X-TARGETDURATION {v:?}"))?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v
                .parse()
                .map_err(|_| format!("bad EXT-X-MEDIA-SEQUENCE {v:?}"))?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let number = v.split(',').next().unwrap_or("").trim();
            duration = Some(
                number
                    .parse::<f64>()
                    .map_err(|_| format!("bad EXTINF {v:?}"))?,
            );
        } else if line.starts_with("#EXT-X-GAP") {
            gap = true;
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-MAP:") {
            map = attributes(attrs)
                .into_iter()
                .find(|(k, _)| *k == "URI")
                .map(|(_, v)| v.to_string());
        } else if line.starts_with("#EXT-X-ENDLIST") {
            p.ended = true;
        } else if !line.starts_with('#') {
            let duration = duration
                .take()
                .ok_or_else(|| format!("segment {line} without EXTINF"))?;
            p.entries.push(Entry {
                uri: line.into(),
                duration,
                gap: std::mem::take(&mut gap),
                map: map.clone(),
            });
        }
    }
    if p.target_duration <= 0.0 {
        return Err("a media playlist without EXT-X-TARGETDURATION".into());
    }
    Ok(p)
}

/// An attribute list (`KEY=VALUE,KEY="quoted, value"`), quotes removed.
fn attributes(list: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap_or(quoted.len());
                let tail = &quoted[(end + 1).min(quoted.len())..];
                (
                    &quoted[..end],
                    tail.find(',').map_or("", |c| &tail[c + 1..]),
                )
            }
            None => match after.find(',') {
                Some(c) => (&after[..c], &after[c + 1..]),
                None => (after, ""),
            },
        };
        out.push((key, value.trim()));
        rest = next.trim_start();
    }
    out
}

/// The media playlists a player of `choice` follows: its variant, and the variant's audio
/// rendition when it has its own playlist.
pub fn choose(
    master: &MasterPlaylist,
    base: &Url,
    choice: &Rendition,
    random: u64,
) -> Result<Vec<Url>, String> {
    let names: Vec<(&str, u64)> = master
        .variants
        .iter()
        .map(|v| (v.uri.split('/').next().unwrap_or(&v.uri), v.bandwidth))
        .collect();
    let i = super::choose(&names, choice, random)
        .or_else(|| match choice {
            Rendition::Named(n) => master.variants.iter().position(|v| v.uri == *n),
            _ => None,
        })
        .ok_or_else(|| super::no_such_rendition(choice, &names))?;
    let variant = &master.variants[i];
    let join = |uri: &str| base.join(uri).map_err(|e| format!("{uri}: {e}"));
    let mut urls = vec![join(&variant.uri)?];
    if let Some(group) = &variant.audio_group {
        let in_group = || master.audio.iter().filter(|a| a.group == *group);
        if let Some(a) = in_group().find(|a| a.default).or_else(|| in_group().next()) {
            urls.push(join(&a.uri)?);
        }
    }
    Ok(urls)
}

/// One media playlist, followed.
pub struct MediaSource {
    url: Url,
    playlist: Option<MediaPlaylist>,
    next_reload: Instant,
    /// Media sequence number of the next segment to hand out.
    cursor: Option<u64>,
}

impl MediaSource {
    pub fn new(url: Url) -> MediaSource {
        MediaSource {
            url,
            playlist: None,
            next_reload: Instant::now(),
            cursor: None,
        }
    }

    /// The segment duration the player should expect, once the playlist is known.
    pub fn target_duration(&self) -> Option<f64> {
        self.playlist.as_ref().map(|p| p.target_duration)
    }

    /// The next segment to fetch, reloading the playlist as its schedule says (and waiting for
    /// it to grow at the live edge). `Ended` at `end` too.
    pub async fn next(&mut self, client: &Client, end: Instant) -> Next {
        loop {
            let ended = self.playlist.as_ref().is_some_and(|p| p.ended);
            if !ended && (self.playlist.is_none() || Instant::now() >= self.next_reload) {
                let wait = self.next_reload.min(end);
                tokio::time::sleep_until(wait.into()).await;
                if Instant::now() >= end {
                    return Next::Ended;
                }
                self.reload(client, end).await;
                continue;
            }
            let Some(p) = &self.playlist else { continue };
            let last = p.media_sequence + p.entries.len() as u64;
            let start = if p.ended {
                p.media_sequence
            } else {
                last.saturating_sub(LIVE_START_SEGMENTS)
                    .max(p.media_sequence)
            };
            let cursor = *self.cursor.get_or_insert(start);
            if cursor < p.media_sequence {
                self.cursor = None;
                return Next::Rejoin;
            }
            if let Some(entry) = p.entries.get((cursor - p.media_sequence) as usize) {
                self.cursor = Some(cursor + 1);
                return match self.segment(entry) {
                    Ok(s) => Next::Segment(s),
                    Err(_) => {
                        client.recorder().invalid();
                        continue;
                    }
                };
            }
            if p.ended {
                return Next::Ended;
            }
            // At the live edge: wait for the next reload.
            let wait = self.next_reload.min(end);
            tokio::time::sleep_until(wait.into()).await;
            if Instant::now() >= end {
                return Next::Ended;
            }
        }
    }

    fn segment(&self, entry: &Entry) -> Result<Segment, String> {
        let join = |uri: &str| self.url.join(uri).map_err(|e| format!("{uri}: {e}"));
        Ok(Segment {
            url: join(&entry.uri)?,
            duration: entry.duration,
            init: entry.map.as_deref().map(join).transpose()?,
            gap: entry.gap,
        })
    }

    async fn reload(&mut self, client: &Client, end: Instant) {
        let began = Instant::now();
        let target = self.target_duration().unwrap_or(1.0);
        let parsed = match client.get(Kind::Manifest, &self.url, true, end).await {
            Ok(body) => match std::str::from_utf8(&body).map_err(|e| e.to_string()) {
                Ok(text) => parse(text),
                Err(e) => Err(e),
            },
            Err(_) => {
                self.next_reload = began + Duration::from_secs_f64(target / 2.0);
                return;
            }
        };
        match parsed {
            Ok(Playlist::Media(p)) => {
                let last = |p: &MediaPlaylist| p.media_sequence + p.entries.len() as u64;
                let changed = self
                    .playlist
                    .as_ref()
                    .is_none_or(|old| last(old) != last(&p));
                let wait = if changed {
                    p.target_duration
                } else {
                    p.target_duration / 2.0
                };
                self.next_reload = began + Duration::from_secs_f64(wait);
                self.playlist = Some(p);
            }
            _ => {
                client.recorder().invalid();
                self.next_reload = began + Duration::from_secs_f64(target / 2.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_lists_keep_quoted_commas() {
        assert_eq!(
            attributes(r#"BANDWIDTH=932000,CODECS="avc1.4d401e,mp4a.40.2",RESOLUTION=640x360"#),
            vec![
                ("BANDWIDTH", "932000"),
                ("CODECS", "avc1.4d401e,mp4a.40.2"),
                ("RESOLUTION", "640x360")
            ]
        );
        assert_eq!(attributes(r#"URI="init.mp4""#), vec![("URI", "init.mp4")]);
        assert_eq!(attributes(""), vec![]);
    }

    #[test]
    fn encores_multivariant_playlist_reads_like_m3u8_rs_reads_it() {
        let text = include_str!("../package/testdata/vod/master.m3u8");
        let Ok(Playlist::Master(m)) = parse(text) else {
            panic!("not a master playlist")
        };
        let Ok(m3u8_rs::Playlist::MasterPlaylist(theirs)) =
            m3u8_rs::parse_playlist_res(text.as_bytes())
        else {
            panic!("m3u8-rs cannot read it")
        };
        assert_eq!(m.variants.len(), theirs.variants.len());
        for (ours, theirs) in m.variants.iter().zip(&theirs.variants) {
            assert_eq!(ours.uri, theirs.uri);
            assert_eq!(ours.bandwidth, theirs.bandwidth);
            assert_eq!(ours.audio_group, theirs.audio);
        }
        assert_eq!(
            m.audio,
            vec![AudioRendition {
                group: "audio".into(),
                uri: "audio/index.m3u8".into(),
                default: true
            }]
        );
        let base = Url::parse("http://o/vod/x/master.m3u8").unwrap();
        let urls = |choice| {
            choose(&m, &base, &choice, 7)
                .unwrap()
                .iter()
                .map(Url::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            urls(Rendition::Top),
            [
                "http://o/vod/x/1080p/index.m3u8",
                "http://o/vod/x/audio/index.m3u8"
            ]
        );
        assert_eq!(urls(Rendition::Bottom)[0], "http://o/vod/x/360p/index.m3u8");
        assert_eq!(
            urls(Rendition::Named("720p".into()))[0],
            "http://o/vod/x/720p/index.m3u8"
        );
        let e = choose(&m, &base, &Rendition::Named("4k".into()), 0).unwrap_err();
        assert!(e.contains("1080p, 720p, 360p"), "{e}");
    }

    #[test]
    fn encores_media_playlists_read_like_m3u8_rs_reads_them() {
        for text in [
            include_str!("../package/testdata/live/720p/index.m3u8"),
            include_str!("../package/testdata/vod/1080p/index.m3u8"),
            include_str!("../package/testdata/vod/audio/index.m3u8"),
        ] {
            let Ok(Playlist::Media(p)) = parse(text) else {
                panic!("not a media playlist")
            };
            let Ok(m3u8_rs::Playlist::MediaPlaylist(theirs)) =
                m3u8_rs::parse_playlist_res(text.as_bytes())
            else {
                panic!("m3u8-rs cannot read it")
            };
            assert_eq!(p.target_duration, theirs.target_duration as f64);
            assert_eq!(p.media_sequence, theirs.media_sequence);
            assert_eq!(p.ended, theirs.end_list);
            assert_eq!(p.entries.len(), theirs.segments.len());
            for (ours, theirs) in p.entries.iter().zip(&theirs.segments) {
                assert_eq!(ours.uri, theirs.uri);
                assert!((ours.duration - theirs.duration as f64).abs() < 1e-6);
                assert_eq!(ours.map.as_deref(), Some("init.mp4"));
                let gap = theirs.unknown_tags.iter().any(|t| t.tag == "X-GAP");
                assert_eq!(ours.gap, gap);
            }
        }
    }

    #[test]
    fn gaps_and_bad_playlists() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n\
                    #EXTINF:2.0,\n10.m4s\n#EXT-X-GAP\n#EXTINF:2.0,\n11.m4s\n#EXTINF:2.0,\n12.m4s\n";
        let Ok(Playlist::Media(p)) = parse(text) else {
            panic!()
        };
        let gaps: Vec<bool> = p.entries.iter().map(|e| e.gap).collect();
        assert_eq!(gaps, [false, true, false]);
        assert!(!p.ended);
        for bad in [
            "<html>",
            "#EXTM3U\n#EXTINF:2,\na.m4s\n",
            "#EXTM3U\n#EXT-X-TARGETDURATION:x\n",
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\nb.m4s\n",
            "#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1\nv.m3u8\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
