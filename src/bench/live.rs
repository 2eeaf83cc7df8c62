//! `encore bench --live`: how many live channels this machine carries. K copies of a reference
//! channel (a WxH@fps H.264 feed over UDP, looped by the FFmpeg CLI without re-encoding, with
//! the output format WxH@fps, through the codec's default ladder) run in one `encore serve` for a fixed time; K rises until a
//! channel misses real time. The report gives the largest K that held, with the daemon's CPU
//! and memory at each step.
//!
//! A channel misses real time when, at any poll (twice a second), the newest segment its top
//! rendition lists is more than one segment behind the clock (segment N is due at (N+1)·D), or
//! it is on slate (its feed is local and never stops, so slate means the input could not be
//! read in time), or when any rung encoded fewer than 98% of the frames the measured time holds
//! (the channel's clock drops frames for a rung that falls behind, to keep its segments due).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::TempDir;

const SEGMENT_SECONDS: u64 = 2;

#[derive(Debug, Clone)]
pub struct Options {
    pub encore: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub preset: String,
    /// Measured seconds per step (after the channels are on air).
    pub seconds: u32,
    /// The most channels tried.
    pub max_channels: usize,
}

/// One step: K channels at once.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub channels: usize,
    pub held: bool,
    /// Why not, when it did not hold.
    pub missed: Option<String>,
    /// The daemon's CPU over the measured time, in cores.
    pub cpu_cores: f64,
    /// The daemon's resident memory at the end, MiB.
    pub memory_mib: f64,
    /// The most any channel's top rendition lagged behind the clock, in segments.
    pub worst_lag_segments: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The reference channel.
    pub channel: String,
    pub cores: usize,
    pub seconds: u32,
    pub steps: Vec<Step>,
    /// The most channels that held real time.
    pub density: usize,
    /// At that density: CPU per channel (cores) and memory per channel (MiB, the daemon's
    /// resident memory divided by the channels).
    pub cpu_cores_per_channel: Option<f64>,
    pub memory_mib_per_channel: Option<f64>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "reference channel: {}", self.channel)?;
        writeln!(
            f,
            "{} cores, {} s measured per step",
            self.cores, self.seconds
        )?;
        writeln!(
            f,
            "{:>9}{:>8}{:>12}{:>13}{:>11}  missed",
            "channels", "held", "CPU cores", "memory MiB", "worst lag"
        )?;
        for s in &self.steps {
            writeln!(
                f,
                "{:>9}{:>8}{:>12.2}{:>13.0}{:>11}  {}",
                s.channels,
                if s.held { "yes" } else { "no" },
                s.cpu_cores,
                s.memory_mib,
                s.worst_lag_segments,
                s.missed.as_deref().unwrap_or("")
            )?;
        }
        write!(f, "density: {} channel(s)", self.density)?;
        if let (Some(cpu), Some(mem)) = (self.cpu_cores_per_channel, self.memory_mib_per_channel) {
            write!(f, ", {cpu:.2} cores and {mem:.0} MiB per channel")?;
        }
        writeln!(f)
    }
}

pub fn run(options: &Options, progress: &dyn Fn(&str)) -> Result<Report, String> {
    let dir = TempDir::new()?;
    let (w, h, fps) = (options.width, options.height, options.fps);
    // About 3 bits a pixel a second: 6 Mb/s at 1080p30, as a contribution feed.
    let feed_bitrate = u64::from(w) * u64::from(h) * u64::from(fps) / 10;
    progress(&format!("making the {w}x{h}@{fps} feed"));
    let feed = dir.0.join("feed.ts");
    make_feed(&feed, w, h, fps, feed_bitrate)?;
    let channel = format!(
        "{w}x{h}@{fps} H.264 at {} kb/s over UDP → the default ladder, x264 {}",
        feed_bitrate / 1000,
        options.preset
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut steps: Vec<Step> = Vec::new();
    for k in 1..=options.max_channels.max(1) {
        progress(&format!("{k} channel(s)"));
        let step = step(options, &dir.0, &feed, k, progress)?;
        let held = step.held;
        steps.push(step);
        if !held {
            break;
        }
    }
    let best = steps.iter().filter(|s| s.held).max_by_key(|s| s.channels);
    Ok(Report {
        channel,
        cores,
        seconds: options.seconds,
        density: best.map_or(0, |s| s.channels),
        cpu_cores_per_channel: best.map(|s| s.cpu_cores / s.channels as f64),
        memory_mib_per_channel: best.map(|s| s.memory_mib / s.channels as f64),
        steps,
    })
}

/// Ten seconds of the test pattern with moving noise and a tone, as a contribution encoder
/// would send it (closed GOPs of 2 s).
fn make_feed(path: &Path, w: u32, h: u32, fps: u32, bitrate: u64) -> Result<(), String> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size={w}x{h}:rate={fps},noise=alls=8:allf=t"
        ))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "10", "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-b:v", &bitrate.to_string(), "-g", &(fps * 2).to_string()])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts"])
        .arg(path)
        .status()
        .map_err(|e| format!("the ffmpeg CLI is needed for the benchmark: {e}"))?;
    if !status.success() {
        return Err("ffmpeg could not make the feed".into());
    }
    Ok(())
}

/// Children killed on drop.
struct Processes(Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn step(
    options: &Options,
    dir: &Path,
    feed: &Path,
    k: usize,
    progress: &dyn Fn(&str),
) -> Result<Step, String> {
    let data = dir.join(format!("data-{k}"));
    let mut config = String::new();
    let mut ports = Vec::new();
    for i in 0..k {
        let port = free_udp_port()?;
        ports.push(port);
        config += &format!(
            "[[channels]]\nname = \"bench{i}\"\ninput = \"udp://127.0.0.1:{port}\"\n\
             format = \"{}x{}@{}\"\npreset = \"{}\"\nsegment_duration = {SEGMENT_SECONDS}.0\n\
             dvr_window = 60.0\n\n",
            options.width, options.height, options.fps, options.preset
        );
    }
    let config_file = dir.join(format!("encore-{k}.toml"));
    std::fs::write(&config_file, config).map_err(|e| e.to_string())?;
    let mut processes = Processes(Vec::new());
    let mut serve = Command::new(&options.encore)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config_file)
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("encore serve: {e}"))?;
    let pid = serve.id();
    let addr = super::origin::serving_address(&mut serve);
    processes.0.push(serve);
    let addr = addr?;
    for port in &ports {
        let feeder = Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-nostdin", "-re"])
            .args(["-stream_loop", "-1", "-i"])
            .arg(feed)
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("ffmpeg: {e}"))?;
        processes.0.push(feeder);
    }
    // On air: every channel lists a segment (its start and first GOPs are not measured).
    let names: Vec<String> = (0..k).map(|i| format!("bench{i}")).collect();
    let started = Instant::now();
    let playlists = loop {
        if started.elapsed() > Duration::from_secs(60) {
            return Ok(missed_step(k, "not on air within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(500));
        if let Some(p) = top_playlists(&addr, &names) {
            if p.iter().all(|path| newest_segment(&addr, path).is_some()) {
                break p;
            }
        }
    };
    // One more segment of settling, then the measured time.
    std::thread::sleep(Duration::from_secs(SEGMENT_SECONDS));
    progress(&format!("{k} channel(s): measuring {} s", options.seconds));
    let cpu_before = process_cpu_seconds(pid).ok_or("cannot read the daemon's CPU time")?;
    let frames_before = frames_encoded(&addr).ok_or("cannot read the channels' frames")?;
    let measured_from = Instant::now();
    let mut worst = i64::MIN;
    let mut missed = None;
    while measured_from.elapsed() < Duration::from_secs(u64::from(options.seconds)) {
        std::thread::sleep(Duration::from_millis(500));
        let due = (unix_seconds() / SEGMENT_SECONDS).saturating_sub(1);
        for (name, path) in names.iter().zip(&playlists) {
            let lag = match newest_segment(&addr, path) {
                Some(n) => due as i64 - n as i64,
                None => i64::MAX,
            };
            worst = worst.max(lag);
            if lag > 1 && missed.is_none() {
                missed = Some(format!("{name}: {lag} segments behind the clock"));
            }
        }
        if missed.is_none() {
            if let Some(name) = on_slate(&addr) {
                missed = Some(format!("{name}: on slate"));
            }
        }
    }
    let wall = measured_from.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds(pid).ok_or("cannot read the daemon's CPU time")? - cpu_before;
    let frames_after = frames_encoded(&addr).ok_or("cannot read the channels' frames")?;
    let expected = wall * f64::from(options.fps);
    for ((rung, after), (_, before)) in frames_after.iter().zip(&frames_before) {
        let encoded = after.saturating_sub(*before) as f64;
        if encoded < expected * 0.98 && missed.is_none() {
            missed = Some(format!(
                "{rung}: {encoded:.0} of {expected:.0} frames encoded"
            ));
        }
    }
    let memory = crate::hw::probe::resident_bytes(pid).unwrap_or(0) as f64 / (1 << 20) as f64;
    Ok(Step {
        channels: k,
        held: missed.is_none(),
        missed,
        cpu_cores: cpu / wall,
        memory_mib: memory,
        worst_lag_segments: worst,
    })
}

fn missed_step(k: usize, why: &str) -> Step {
    Step {
        channels: k,
        held: false,
        missed: Some(why.to_owned()),
        cpu_cores: 0.0,
        memory_mib: 0.0,
        worst_lag_segments: 0,
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Each channel's top media playlist path, once the API lists them all with renditions.
fn top_playlists(addr: &str, names: &[String]) -> Option<Vec<String>> {
    let (status, body) = super::origin::get(addr, "/v1/channels").ok()?;
    if status != 200 {
        return None;
    }
    let list: serde_json::Value = serde_json::from_slice(&body).ok()?;
    names
        .iter()
        .map(|name| {
            let c = list["channels"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == name.as_str())?;
            let top = c["renditions"].get(0)?["id"].as_str()?;
            Some(format!("/live/{name}/{top}/index.m3u8"))
        })
        .collect()
}

/// Frames encoded so far by each rung of each channel (`channel/rung`), in the API's order.
fn frames_encoded(addr: &str) -> Option<Vec<(String, u64)>> {
    let (_, body) = super::origin::get(addr, "/v1/channels").ok()?;
    let list: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let mut out = Vec::new();
    for c in list["channels"].as_array()? {
        for r in c["renditions"].as_array()? {
            let name = format!("{}/{}", c["name"].as_str()?, r["id"].as_str()?);
            out.push((name, r["frames_encoded"].as_u64()?));
        }
    }
    Some(out)
}

/// A channel the API shows on slate.
fn on_slate(addr: &str) -> Option<String> {
    let (_, body) = super::origin::get(addr, "/v1/channels").ok()?;
    let list: serde_json::Value = serde_json::from_slice(&body).ok()?;
    list["channels"]
        .as_array()?
        .iter()
        .find(|c| c["state"] == "on_slate")
        .and_then(|c| c["name"].as_str().map(str::to_owned))
}

/// The number of the newest segment a media playlist lists.
fn newest_segment(addr: &str, path: &str) -> Option<u64> {
    let (status, body) = super::origin::get(addr, path).ok()?;
    if status != 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .rev()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())?
        .trim()
        .strip_suffix(".m4s")?
        .parse()
        .ok()
}

/// User + system CPU seconds of process `pid` (`/proc/PID/stat`).
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks / hz)
}

fn free_udp_port() -> Result<u16, String> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    s.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_cpu_time_is_read_from_proc() {
        let cpu = process_cpu_seconds(std::process::id()).unwrap();
        assert!(cpu >= 0.0);
        // Work for a few clock ticks shows.
        let until = Instant::now() + Duration::from_millis(200);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(process_cpu_seconds(std::process::id()).unwrap() > cpu);
    }
}
