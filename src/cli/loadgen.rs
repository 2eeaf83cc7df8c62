//! `encore loadgen`'s arguments.

use std::time::Duration;

use clap::Args;

use crate::loadgen::{Options, Rendition, Retry, MAX_PLAYERS};

#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// The stream: an HLS multivariant or media playlist, or a DASH MPD (http or https).
    pub url: String,
    /// Players to start in all (1 to 50000).
    #[arg(long, default_value_t = 10)]
    pub players: u32,
    /// Player starts per second (`20` or `20/s`).
    #[arg(long, default_value = "10", value_parser = parse_ramp)]
    pub ramp: f64,
    /// Seconds the run lasts, the ramp included (at most a day).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// What each player plays: top, bottom, random, or a rendition's name (an HLS variant's
    /// folder such as 720p, a DASH Representation id).
    #[arg(long, default_value = "top")]
    pub rendition: Rendition,
    /// When a request fails: none (a segment is skipped, a playlist reloaded on schedule),
    /// immediate (retried at once: a retry storm) or retry-after (after the answer's
    /// Retry-After, else 1 s).
    #[arg(long, default_value = "none")]
    pub retry: Retry,
    /// Print the summary, with every second's figures, as JSON on stdout (the running lines go
    /// to stderr).
    #[arg(long)]
    pub json: bool,
}

impl LoadgenArgs {
    pub fn options(&self) -> Result<Options, String> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("{}: {e}", self.url))?;
        let duration = Duration::try_from_secs_f64(self.duration)
            .map_err(|_| format!("--duration {}: a number of seconds", self.duration))?;
        if self.players > MAX_PLAYERS {
            return Err(format!("--players {}: at most {MAX_PLAYERS}", self.players));
        }
        let options = Options {
            url,
            players: self.players,
            ramp: self.ramp,
            duration,
            rendition: self.rendition.clone(),
            retry: self.retry,
        };
        options.check()?;
        Ok(options)
    }
}

fn parse_ramp(s: &str) -> Result<f64, String> {
    let number = s.trim().trim_end_matches("/s");
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?}: player starts a second, e.g. 20 or 20/s")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<crate::loadgen::Options, String> {
        let cli = Cli::try_parse_from([&["encore", "loadgen"], args].concat())
            .map_err(|e| e.to_string())?;
        let Command::Loadgen(a) = cli.command else {
            panic!("not loadgen")
        };
        a.options()
    }

    #[test]
    fn flags_parse_with_their_defaults() {
        let o = parse(&["http://127.0.0.1:8080/live/demo/master.m3u8"]).unwrap();
        assert_eq!((o.players, o.ramp, o.duration.as_secs()), (10, 10.0, 30));
        assert_eq!(o.rendition, crate::loadgen::Rendition::Top);
        let o = parse(&[
            "https://cdn.example/x.mpd",
            "--players",
            "500",
            "--ramp",
            "50/s",
            "--duration",
            "12.5",
            "--rendition",
            "360p",
            "--retry",
            "retry-after",
        ])
        .unwrap();
        assert_eq!((o.players, o.ramp), (500, 50.0));
        assert_eq!(o.duration.as_millis(), 12_500);
        assert_eq!(o.rendition, crate::loadgen::Rendition::Named("360p".into()));
        assert_eq!(o.retry, crate::loadgen::Retry::RetryAfter);
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        for (args, says) in [
            (&["not a url"][..], "relative URL"),
            (&["ftp://h/x.mpd"], "http"),
            (&["http://h/x.mpd", "--players", "0"], "--players"),
            (&["http://h/x.mpd", "--players", "60000"], "--players"),
            (&["http://h/x.mpd", "--ramp", "fast"], "starts a second"),
            (&["http://h/x.mpd", "--duration=-1"], "--duration"),
            (&["http://h/x.mpd", "--duration", "0"], "--duration"),
            (&["http://h/x.mpd", "--retry", "often"], "retry-after"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}
