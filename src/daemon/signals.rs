//! The daemon's signals, installed before anything starts so that none of them can kill it
//! half-started: SIGTERM and SIGINT stop it in order (a second one exits at once), SIGHUP
//! reloads the channels of the configuration file.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Stop,
    Reload,
}

pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> Result<Signals, String> {
        let install = |kind, name| signal(kind).map_err(|e| format!("cannot handle {name}: {e}"));
        Ok(Signals {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
            hup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.term.recv() => Request::Stop,
            _ = self.int.recv() => Request::Stop,
            _ = self.hup.recv() => Request::Reload,
        }
    }

    /// From now on a stop signal exits the process at once (the operator's second Ctrl-C),
    /// and SIGHUP is ignored.
    pub fn exit_on_next_stop(mut self) {
        tokio::spawn(async move {
            while self.next().await != Request::Stop {}
            eprintln!("encore: second stop signal: exiting now");
            std::process::exit(130);
        });
    }
}
