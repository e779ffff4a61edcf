//! A TCP proxy in front of the broker that a test can cut, freeze and restore: a broker outage
//! for one test's connections only, while other tests keep sharing the real broker.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    /// Connections are closed and new ones dropped: a broker that is down.
    Down,
    /// Connections stay open but nothing passes: a broker (or network) that hangs.
    Frozen,
}

pub struct TcpProxy {
    address: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let (mode, _) = watch::channel(Mode::Up);
        let modes = mode.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(pipe(inbound, target, modes.subscribe()));
            }
        });
        Self { address, mode }
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.address)
    }

    /// Severs every proxied connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Down);
    }

    /// Keeps every connection open but passes no byte, until [`TcpProxy::restore`] closes them.
    pub fn freeze(&self) {
        self.mode.send_replace(Mode::Frozen);
    }

    pub fn restore(&self) {
        self.mode.send_replace(Mode::Up);
    }
}

async fn pipe(mut inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow_and_update();
    match current {
        Mode::Down => return,
        Mode::Frozen => {
            let _ = mode.wait_for(|mode| *mode != Mode::Frozen).await;
            return;
        }
        Mode::Up => {}
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            _ = &mut copy => return,
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = *mode.borrow_and_update();
                match current {
                    Mode::Up => {}
                    Mode::Down => return,
                    Mode::Frozen => {
                        // Stop polling the copy: the sockets stay open, silent.
                        let _ = mode.wait_for(|mode| *mode != Mode::Frozen).await;
                        return;
                    }
                }
            }
        }
    }
}
