//! Shared helpers for integration tests: fixtures made by the ffmpeg CLI, the encore binary,
//! and independent readers of the output (mp4-atom, m3u8-rs, dash-mpd, ffprobe).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mp4_atom::{Any, Codec, Decode};

/// Where generated fixtures are cached between tests (inside the build folder).
pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes (once) a fixture with the ffmpeg CLI; the arguments are the recipe, written beside
/// each use and in tests/fixtures/README.md.
pub fn fixture(name: &str, ffmpeg_args: &[&str]) -> PathBuf {
    let path = fixtures_dir().join(name);
    if path.exists() {
        return path;
    }
    // Write under a unique name and rename: tests in parallel processes may race to make it.
    let tmp = fixtures_dir().join(format!(
        ".{}.{}.{}",
        std::process::id(),
        rand_suffix(),
        name
    ));
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(ffmpeg_args)
        .arg(&tmp)
        .status()
        .expect("ffmpeg CLI (run packaging/install-deps.sh)");
    assert!(status.success(), "ffmpeg failed making fixture {name}");
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish()
}

/// 10 s, 1280x720, 30 fps H.264 with AAC stereo at 44.1 kHz (resampled to 48 kHz by encore).
pub fn source_720p() -> PathBuf {
    fixture(
        "src-720p30-10s.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-movflags",
            "+faststart",
        ],
    )
}

pub fn encore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_encore"));
    c.env("NO_COLOR", "1");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run encore");
    if !out.status.success() {
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("encore-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// All top-level boxes of an MP4 byte string, decoded by mp4-atom (strict).
pub fn boxes(bytes: &[u8]) -> Vec<Any> {
    let mut buf = bytes;
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(Any::decode(&mut buf).expect("valid box"));
    }
    out
}

/// The sample entry of an init segment (one trak), and its timescale.
pub fn init_info(path: &Path) -> (Codec, u32) {
    let atoms = boxes(&std::fs::read(path).unwrap());
    let moov = atoms
        .iter()
        .find_map(|a| {
            if let Any::Moov(m) = a {
                Some(m.clone())
            } else {
                None
            }
        })
        .expect("moov");
    assert_eq!(moov.trak.len(), 1, "one track per file");
    let trak = &moov.trak[0];
    (
        trak.mdia.minf.stbl.stsd.codecs[0].clone(),
        trak.mdia.mdhd.timescale,
    )
}

/// One media segment, read back.
pub struct SegmentView {
    pub brands: Vec<String>,
    pub tfdt: u64,
    pub samples: Vec<(u32, u32, u32, i64)>, // duration, size, flags, cts
    pub mdat: Vec<u8>,
}

pub fn read_segment(path: &Path) -> SegmentView {
    let atoms = boxes(&std::fs::read(path).unwrap());
    let mut view = SegmentView {
        brands: vec![],
        tfdt: 0,
        samples: vec![],
        mdat: vec![],
    };
    assert!(
        matches!(atoms.first(), Some(Any::Styp(_))),
        "{}: starts with styp",
        path.display()
    );
    for a in atoms {
        match a {
            Any::Styp(s) => {
                view.brands = s.compatible_brands.iter().map(|b| b.to_string()).collect()
            }
            Any::Moof(m) => {
                assert_eq!(m.traf.len(), 1);
                let traf = &m.traf[0];
                view.tfdt = traf.tfdt.as_ref().expect("tfdt").base_media_decode_time;
                for t in &traf.trun {
                    for e in t.samples.iter() {
                        view.samples.push((
                            e.duration.unwrap_or(0),
                            e.size.unwrap_or(0),
                            e.flags.unwrap_or(0),
                            e.cts.unwrap_or(0),
                        ));
                    }
                }
            }
            Any::Mdat(m) => view.mdat = m.data,
            _ => {}
        }
    }
    view
}

/// NAL unit types of the first sample of a segment (4-byte length prefixes), parsed here
/// independently of encore's own NAL code.
pub fn first_sample_nal_types(view: &SegmentView, hevc: bool) -> Vec<u8> {
    let size = view.samples[0].1 as usize;
    let mut data = &view.mdat[..size];
    let mut types = Vec::new();
    while data.len() >= 4 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let nal = &data[4..4 + len];
        types.push(if hevc {
            (nal[0] >> 1) & 0x3f
        } else {
            nal[0] & 0x1f
        });
        data = &data[4 + len..];
    }
    types
}

/// Runs ffprobe on init + all segments of a rendition concatenated: returns (frames, stderr).
pub fn decode_rendition(dir: &Path, stream: &str) -> (u64, String) {
    let mut bytes = std::fs::read(dir.join("init.mp4")).unwrap();
    for n in segment_numbers(dir) {
        bytes.extend(std::fs::read(dir.join(format!("{n}.m4s"))).unwrap());
    }
    let joined = dir.join("joined.mp4.tmp");
    std::fs::write(&joined, bytes).unwrap();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            stream,
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            "-f",
            "mp4",
        ])
        .arg(&joined)
        .output()
        .unwrap();
    std::fs::remove_file(&joined).ok();
    let frames = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_end_matches(',')
        .parse()
        .unwrap_or(0);
    (frames, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Segment numbers present in a rendition folder, in order.
pub fn segment_numbers(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".m4s")?
                .parse()
                .ok()
        })
        .collect();
    v.sort();
    v
}

/// RFC 6381 string derived from a sample entry (independent of encore's SPS parsing).
pub fn codec_string_of(entry: &Codec) -> String {
    match entry {
        Codec::Avc1(a) => format!(
            "avc1.{:02x}{:02x}{:02x}",
            a.avcc.avc_profile_indication,
            a.avcc.profile_compatibility,
            a.avcc.avc_level_indication
        ),
        Codec::Hvc1(h) => {
            let c = &h.hvcc;
            let mut compat = u32::from_be_bytes(c.general_profile_compatibility_flags);
            compat = compat.reverse_bits();
            let space = ["", "A", "B", "C"][c.general_profile_space as usize & 3];
            let mut constraints: Vec<u8> = c.general_constraint_indicator_flags.to_vec();
            while constraints.last() == Some(&0) {
                constraints.pop();
            }
            let mut s = format!(
                "hvc1.{space}{}.{:X}.{}{}",
                c.general_profile_idc,
                compat,
                if c.general_tier_flag { 'H' } else { 'L' },
                c.general_level_idc
            );
            for b in constraints {
                s.push_str(&format!(".{b:X}"));
            }
            s
        }
        Codec::Mp4a(_) => "mp4a.40.2".into(),
        other => panic!("unexpected sample entry {other:?}"),
    }
}

/// ffmpeg decodes every stream of a manifest (a real client): returns stderr, empty when clean.
pub fn ffmpeg_decode_all(manifest: &Path) -> (bool, String) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(manifest)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses Prometheus text with prometheus_client's own parser (in tests/openapi/.venv, which
/// `make test` makes): every sample as (name, labels, value). Panics with the parser's error.
pub fn parse_prometheus(
    text: &str,
) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    use std::io::Write;
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/.venv/bin/python");
    let script = "import sys, json\n\
                  from prometheus_client.parser import text_string_to_metric_families\n\
                  print(json.dumps([[s.name, s.labels, s.value]\n\
                      for f in text_string_to_metric_families(sys.stdin.read())\n\
                      for s in f.samples]))";
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (`make test` makes the venv)", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client cannot parse /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// tests/players: the web players' scripts and their node_modules.
pub fn web_players_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/players")
}

/// Whether Chromium, node and the web players are here; their absence is a failure naming the
/// fix (`make test` installs them).
pub fn web_players_available() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing: Vec<&str> = [
        (!Path::new(&chromium).exists()).then_some("chromium"),
        Command::new("node")
            .arg("--version")
            .output()
            .is_err()
            .then_some("node"),
        (!web_players_dir().join("node_modules").exists()).then_some("tests/players/node_modules"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    panic!("missing {}: run `make test-deps`", missing.join(", "));
}

/// Plays `url` with `kind` (hls or dash) for `seconds` and returns the page's report.
pub fn play(kind: &str, url: &str, seconds: u32) -> serde_json::Value {
    play_with(kind, url, seconds, None)
}

/// As `play`; `cmcd`: the player sends CMCD with this session id.
pub fn play_with(kind: &str, url: &str, seconds: u32, cmcd: Option<&str>) -> serde_json::Value {
    let mut command = Command::new("node");
    command
        .arg(web_players_dir().join("play.js"))
        .args([kind, url, &seconds.to_string()]);
    if let Some(session) = cmcd {
        command.env("PLAYER_CMCD", session);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{kind} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Started, decoded frames, advanced at least `min_played` s, no fatal error.
pub fn assert_played(
    kind: &str,
    url: &str,
    report: &serde_json::Value,
    levels: u64,
    min_played: f64,
) {
    println!("{kind} {url}: {report}");
    let fatal: Vec<_> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fatal"] == true)
        .collect();
    assert!(fatal.is_empty(), "{kind} {url}: fatal errors {fatal:?}");
    assert!(report["mediaError"].is_null(), "{kind} {url}: {report}");
    assert_eq!(report["levels"], levels, "{kind} {url}: renditions seen");
    assert!(
        report["width"].as_u64().unwrap() > 0,
        "{kind} {url}: no picture"
    );
    assert!(
        report["totalFrames"].as_u64().unwrap() > 30,
        "{kind} {url}: {report}"
    );
    let advanced = report["advanced"].as_f64().unwrap();
    assert!(
        advanced >= min_played,
        "{kind} {url}: advanced {advanced} s"
    );
}
