//! [`Driver`]: netlink-proto's `Connection`, polled so that every queued
//! request is sent at each wake-up.
//!
//! `impl Future for Connection` (netlink-proto 0.14.1, `src/connection.rs`)
//! does, at each poll: read every datagram that is ready, forward the
//! messages, take every new request from the handles, then
//! `poll_send_messages`, which sends **one** queued request (one
//! `pop_front()` of the queue) and returns. The next one goes out at the
//! next wake-up, which only a reply or a new request brings. Many requests
//! in flight therefore go out one per reply, in lockstep: measured in the
//! VM on kmod-raw, 64 in flight ran at the rate of one at a time (0.94x).
//!
//! The steps of that poll are public methods of `Connection`, so
//! [`Driver`] is the same poll with the send step repeated until it sends
//! nothing more. What tells it is the socket: [`CountingSocket`] is
//! netlink-sys's `TokioSocket` with a count of the datagrams sent.

use std::cell::Cell;
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use netlink_packet_core::{NetlinkDeserializable, NetlinkSerializable};
use netlink_proto::sys::{AsyncSocket, SocketAddr, TokioSocket};
use netlink_proto::Connection;
use netlink_sys::Socket;

use crate::Codec;

/// How a connection's task polls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driving {
    /// [`Driver`]: every queued request is sent at each wake-up.
    Batched,
    /// netlink-proto's own `Connection` future, as it ships: one request
    /// sent per wake-up.
    Stock,
}

/// netlink-sys's tokio socket, counting the datagrams it sent.
pub struct CountingSocket {
    inner: TokioSocket,
    sent: Cell<u64>,
}

impl CountingSocket {
    pub fn wrap(inner: TokioSocket) -> CountingSocket {
        CountingSocket {
            inner,
            sent: Cell::new(0),
        }
    }
}

impl AsyncSocket for CountingSocket {
    fn socket_ref(&self) -> &Socket {
        self.inner.socket_ref()
    }
    fn socket_mut(&mut self) -> &mut Socket {
        self.inner.socket_mut()
    }
    fn new(protocol: isize) -> io::Result<CountingSocket> {
        TokioSocket::new(protocol).map(CountingSocket::wrap)
    }
    fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let sent = self.inner.poll_send(cx, buf);
        if let Poll::Ready(Ok(_)) = sent {
            self.sent.set(self.sent.get() + 1);
        }
        sent
    }
    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        addr: &SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let sent = self.inner.poll_send_to(cx, buf, addr);
        if let Poll::Ready(Ok(_)) = sent {
            self.sent.set(self.sent.get() + 1);
        }
        sent
    }
    fn poll_recv<B: bytes::BufMut>(
        &self,
        cx: &mut Context<'_>,
        buf: &mut B,
    ) -> Poll<io::Result<()>> {
        self.inner.poll_recv(cx, buf)
    }
    fn poll_recv_from<B: bytes::BufMut>(
        &self,
        cx: &mut Context<'_>,
        buf: &mut B,
    ) -> Poll<io::Result<SocketAddr>> {
        self.inner.poll_recv_from(cx, buf)
    }
    fn poll_recv_from_full(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Vec<u8>, SocketAddr)>> {
        self.inner.poll_recv_from_full(cx)
    }
}

/// A connection of this crate: netlink-proto's, on a [`CountingSocket`],
/// with our [`Codec`].
pub type Conn<P> = Connection<P, CountingSocket, Codec>;

/// The connection's task: [`Driving::Batched`] polls it as [`Driver`]
/// does, [`Driving::Stock`] as netlink-proto does.
pub struct Driver<P>
where
    P: Debug + NetlinkSerializable + NetlinkDeserializable,
{
    pub conn: Conn<P>,
    pub driving: Driving,
}

// ANCHOR: driver
impl<P> Future for Driver<P>
where
    P: Debug + NetlinkSerializable + NetlinkDeserializable + Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let conn = &mut this.conn;
        if this.driving == Driving::Stock {
            return Pin::new(conn).poll(cx);
        }
        // Connection::poll's steps, in its order...
        conn.poll_read_messages(cx);
        conn.forward_unsolicited_messages();
        conn.forward_responses();
        conn.poll_requests(cx);
        // ...but the send step until it sends nothing: the queue is empty,
        // or the socket is full (then its readiness wakes the task).
        loop {
            let before = conn.socket_mut().sent.get();
            conn.poll_send_messages(cx);
            if conn.socket_mut().sent.get() == before {
                break;
            }
        }
        if conn.should_shut_down() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
// ANCHOR_END: driver
