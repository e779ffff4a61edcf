//! systemd's service notifications (`sd_notify(3)`), for units with `Type=notify` and a
//! `WatchdogSec=` (deploy/systemd/).
//!
//! - `READY=1` once the broker connection is up: the listeners are bound before [`App::run`]
//!   starts, so a connected process is a serving one, and `systemctl start` returns only then.
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, and only while the broker connection is usable:
//!   a process that hangs, or that stays cut off from RabbitMQ for longer than the watchdog
//!   period, is restarted by systemd. A normal reconnect (seconds) stays well inside the period.
//! - `STOPPING=1` when shutdown begins, so systemd shows the drain as "deactivating".
//!
//! Without `NOTIFY_SOCKET` (not under systemd, or in tests) nothing is sent and no task runs.
//! The protocol is one datagram per state on a unix socket; it is written here rather than taken
//! from a crate because it is that small.
//!
//! [`App::run`]: crate::App::run

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use relay_core::broker::Broker;
use relay_core::shutdown::CancellationToken;
use tracing::{debug, warn};

/// Where and how often to tell systemd how the process fares.
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    /// Half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) recommends; `None` without a watchdog.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; `None` when not under a
    /// notify-type unit or when the socket cannot be used (then systemd times the start out,
    /// which says more than a process that guesses).
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let address = match socket_address(path.as_encoded_bytes()) {
            Ok(address) => address,
            Err(error) => {
                warn!(%error, "NOTIFY_SOCKET is not a usable address; systemd is not notified");
                return None;
            }
        };
        let socket = match UnixDatagram::unbound().and_then(|socket| {
            // A full socket buffer must drop a ping, never block the runtime.
            socket.set_nonblocking(true)?;
            Ok(socket)
        }) {
            Ok(socket) => socket,
            Err(error) => {
                warn!(%error, "no socket for systemd notifications");
                return None;
            }
        };
        Some(Self {
            socket,
            address,
            watchdog: watchdog_interval(
                std::env::var("WATCHDOG_USEC").ok().as_deref(),
                std::env::var("WATCHDOG_PID").ok().as_deref(),
            ),
        })
    }

    fn send(&self, state: &str) {
        match self.socket.send_to_addr(state.as_bytes(), &self.address) {
            Ok(_) => debug!(state, "systemd notified"),
            Err(error) => warn!(state, %error, "could not notify systemd"),
        }
    }

    /// Until `shutdown`: `READY=1` once `broker` is ready, then the watchdog pings while it
    /// stays ready; `STOPPING=1` when `shutdown` fires.
    pub async fn run(self, broker: Broker, shutdown: CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.serve(&broker) => {}
        }
        self.send("STOPPING=1");
    }

    async fn serve(&self, broker: &Broker) {
        let mut sessions = broker.sessions();
        while !broker.is_ready() {
            if sessions.changed().await.is_err() {
                // The supervisor is gone: the process is shutting down.
                return std::future::pending().await;
            }
        }
        self.send("READY=1");
        let Some(period) = self.watchdog else {
            return std::future::pending().await;
        };
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            // Checked at each tick rather than on session events: a runtime too busy or hung to
            // tick must go unpinged too.
            if broker.is_ready() {
                self.send("WATCHDOG=1");
            }
        }
    }
}

/// A path, or with a leading `@` a name in Linux's abstract namespace.
fn socket_address(path: &[u8]) -> std::io::Result<SocketAddr> {
    match path.split_first() {
        #[cfg(target_os = "linux")]
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        Some((b'/', _)) => {
            SocketAddr::from_pathname(std::path::Path::new(std::ffi::OsStr::from_bytes(path)))
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract name",
        )),
    }
}

/// Half the watchdog period, when the watchdog is meant for this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
    // WATCHDOG_PID names the process the watchdog is for; a child that inherited it is not.
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|usec| *usec > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_watchdog_period() {
        assert_eq!(
            watchdog_interval(Some("60000000"), None),
            Some(Duration::from_secs(30))
        );
        let own = std::process::id().to_string();
        assert_eq!(
            watchdog_interval(Some("2000000"), Some(&own)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn no_watchdog_when_unset_zero_or_meant_for_another_process() {
        assert_eq!(watchdog_interval(None, None), None);
        assert_eq!(watchdog_interval(Some("0"), None), None);
        assert_eq!(watchdog_interval(Some("soon"), None), None);
        let other = (std::process::id() + 1).to_string();
        assert_eq!(watchdog_interval(Some("2000000"), Some(&other)), None);
    }

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert!(socket_address(b"/run/systemd/notify").is_ok());
        assert!(socket_address(b"@zoom-relay-notify").is_ok());
        assert!(socket_address(b"relative/path").is_err());
        assert!(socket_address(b"").is_err());
    }
}
