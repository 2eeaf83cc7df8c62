//! Seeded random inputs for every parser that reads outside data: ladder specs and files,
//! bitrates, live source URLs and the daemon configuration. Each must answer Ok or a clear
//! Err — never panic — and what it accepts must hold its invariants.
//!
//! `ENCORE_FUZZ_ITERATIONS` (default 3000 per parser) runs longer; `ENCORE_FUZZ_SEED` replays.

use std::panic::{catch_unwind, AssertUnwindSafe};

use encore::daemon::config::Config;
use encore::ingest::live::LiveSource;
use encore::media::{ladder::parse_bitrate, Ladder};

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("ENCORE_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_0fe4_c07e);
        println!("seed {seed} (ENCORE_FUZZ_SEED replays it)");
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn iterations() -> usize {
    std::env::var("ENCORE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

/// A string of `tokens` from the vocabulary a parser expects, with some bytes of anything.
fn phrase(rng: &mut Rng, vocabulary: &[&str]) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(12) {
        match rng.below(10) {
            0 => s.push(char::from_u32(rng.below(0x3000) as u32).unwrap_or('?')),
            1 => s += &rng.next().to_string(),
            _ => s += rng.pick(vocabulary),
        }
    }
    s
}

/// Runs `f`; a panic fails the test with the input that caused it.
fn no_panic<T>(input: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!("panicked on input {input:?}"),
    }
}

#[test]
fn ladder_specs() {
    let mut rng = Rng::new();
    let vocabulary = [
        "1080",
        "720",
        "480",
        "360",
        "0",
        "1",
        "8192",
        "99999999999",
        ":",
        ",",
        "x",
        "k",
        "M",
        "000",
        "3000k",
        "1.5M",
        " ",
        "-",
        "1920x1080",
        ".",
        "K",
        "m",
        "e9",
    ];
    let mut accepted = 0;
    for i in 0..iterations() {
        // Half the specs are well formed rungs with odd values, half free-form.
        let spec = if i % 2 == 0 {
            (0..1 + rng.below(7))
                .map(|_| {
                    let size = match rng.below(3) {
                        0 => rng
                            .pick(&["1080", "720", "480", "360", "2", "4320", "8192"])
                            .to_string(),
                        1 => format!("{}x{}", rng.below(5000), rng.below(5000)),
                        _ => rng.below(3000).to_string(),
                    };
                    let rate =
                        rng.pick(&["3000k", "1M", "1.5M", "730000", "1k", "0.5k", "20000k", "1"]);
                    format!("{size}:{rate}")
                })
                .collect::<Vec<_>>()
                .join(",")
        } else {
            phrase(&mut rng, &vocabulary)
        };
        let Ok(ladder) = no_panic(&spec, || Ladder::from_arg(&spec)) else {
            continue;
        };
        accepted += 1;
        for (w, h) in [(1920, 1080), (1280, 720), (640, 360), (17, 9)] {
            let planned = no_panic(&spec, || ladder.plan(w, h, w as f64 / h as f64));
            if let Ok(rungs) = planned {
                assert!(!rungs.is_empty(), "{spec:?} on {w}x{h}: no rungs");
                for r in rungs {
                    assert!(
                        r.width % 2 == 0 && r.height % 2 == 0 && r.width > 0 && r.height > 0,
                        "{spec:?} on {w}x{h}: {r:?}"
                    );
                    assert!(r.height <= h.max(2) + 1, "{spec:?} upscales {h} to {r:?}");
                    assert!(r.bitrate > 0, "{spec:?}: {r:?}");
                }
            }
        }
    }
    println!("{accepted} specs accepted");
}

#[test]
fn ladder_files() {
    let mut rng = Rng::new();
    let base = "[[rungs]]\nheight = 720\nbitrate = \"3000k\"\n[[rungs]]\nheight = 360\nwidth = 640\nbitrate = 800000\n";
    let dir = tempfile::tempdir().unwrap();
    for i in 0..iterations() / 4 {
        let text = mutate(&mut rng, base);
        let path = dir.path().join(format!("{i}.toml"));
        std::fs::write(&path, &text).unwrap();
        if let Ok(ladder) = no_panic(&text, || Ladder::from_file(&path)) {
            let _ = no_panic(&text, || ladder.plan(1920, 1080, 16.0 / 9.0));
        }
    }
}

#[test]
fn bitrates() {
    let mut rng = Rng::new();
    let vocabulary = [
        "1",
        "0",
        "5",
        "k",
        "M",
        "K",
        ".",
        "e",
        "-",
        " ",
        "99999999999999",
        "G",
    ];
    for _ in 0..iterations() {
        let s = phrase(&mut rng, &vocabulary);
        // Zero is syntax here; each caller says whether it may be zero.
        let _ = no_panic(&s, || parse_bitrate(&s));
    }
}

#[test]
fn live_source_urls() {
    let mut rng = Rng::new();
    let vocabulary = [
        "test:",
        "udp://",
        "srt://",
        "rtmp://",
        "file:",
        "loop:",
        "@",
        ":",
        "1280x720",
        "30",
        "0.0.0.0",
        "127.0.0.1",
        "9000",
        "/",
        "?",
        "mode=listener",
        "&",
        "=",
        "x",
        "//",
        "[::1]",
    ];
    for _ in 0..iterations() {
        let s = phrase(&mut rng, &vocabulary);
        let _ = no_panic(&s, || s.parse::<LiveSource>());
    }
}

#[test]
fn daemon_configurations() {
    let mut rng = Rng::new();
    let base = r#"listen = "127.0.0.1:8080"
data_dir = "./data"
max_in_flight = 64

[[channels]]
name = "news"
input = "udp://0.0.0.0:9000"
format = "1280x720@30"
ladder = "720:3000k,360:800k"
codec = "hevc"
preset = "fast"
backend = "auto"
vaapi_device = "/dev/dri/renderD128"
segment_duration = 2.0
dvr_window = 600.0
audio_bitrate = "96k"
"#;
    let mut parsed = 0;
    for _ in 0..iterations() {
        let text = mutate(&mut rng, base);
        let Ok(config) = no_panic(&text, || toml::from_str::<Config>(&text)) else {
            continue;
        };
        parsed += 1;
        for channel in &config.channels {
            if let Ok(c) = no_panic(&text, || channel.resolve()) {
                assert!(c.audio_bitrate >= 8_000, "{text}");
                assert!(c.segment_duration.as_secs_f64() >= 1.0, "{text}");
                assert!(c.dvr_window >= c.segment_duration * 3, "{text}");
            }
        }
    }
    println!("{parsed} mutated configurations parsed");
}

/// A few random edits of `base`: bytes replaced, inserted or deleted, lines duplicated, and
/// values swapped for boundary numbers.
fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut bytes = base.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len());
        match rng.below(5) {
            0 => bytes[at] = rng.next() as u8,
            1 => bytes.insert(at, b"0123456789.-e\"=[]\n x"[rng.below(20)]),
            2 => {
                bytes.remove(at);
            }
            3 => {
                let value = rng.pick(&[
                    "0",
                    "-1",
                    "1e308",
                    "nan",
                    "inf",
                    "4294967296",
                    "\"\"",
                    "0.001",
                    "1e-9",
                    "18446744073709551616",
                ]);
                bytes.splice(at..at, value.bytes());
            }
            _ => {
                let line_start = bytes[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                let line_end = bytes[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| at + p + 1);
                let line = bytes[line_start..line_end].to_vec();
                bytes.splice(line_end..line_end, line);
            }
        }
        if bytes.is_empty() {
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
