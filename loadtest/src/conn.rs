//! One client connection: TCP, the WebSocket upgrade (fastwebsockets over hyper), the Engine.IO open
//! packet and the Socket.IO CONNECT to `/`. After that the connection is two halves in one task: frames
//! in through [`Conn::next`], queued packets out through [`Conn::flush`].

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload, WebSocketRead, WebSocketWrite};
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use switchboard_protocol::{engineio, socketio};
use tokio::io::{AsyncRead, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::ConnError;
use crate::outbox::Outbox;
use crate::target::Target;

type Io = TokioIo<Upgraded>;
/// The read half of a client connection.
pub type Reader = WebSocketRead<ReadHalf<Io>>;
/// The write half of a client connection.
pub type Writer = WebSocketWrite<WriteHalf<Io>>;

/// What one read produced, once Engine.IO framing is taken off.
#[derive(Debug)]
pub enum Incoming {
    /// The Engine.IO handshake (`0{…}`); only expected first.
    Open,
    /// An Engine.IO ping (`2`): the caller owes a pong (`3`).
    Ping,
    /// An Engine.IO message: the Socket.IO packet text, `4` stripped.
    Message(Bytes),
    /// A WebSocket ping frame: the caller owes a pong frame with this payload.
    WsPing(BytesMut),
    /// Something that needs no answer (noop, pong, binary frame, WebSocket pong).
    Other,
}

/// An open Socket.IO connection to `/`.
pub struct Conn {
    reader: Reader,
    writer: Writer,
    /// Packets queued by behaviours, written on the next [`Conn::flush`].
    pub out: Outbox,
}

/// Runs hyper's connection task for the upgrade; it ends as soon as the connection is upgraded.
struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

impl Conn {
    /// Connects and joins `/`, all within `timeout`.
    pub async fn open(target: &Target, timeout: Duration) -> Result<Self, ConnError> {
        tokio::time::timeout(timeout, Self::open_unbounded(target)).await.map_err(|_| ConnError::TimedOut)?
    }

    async fn open_unbounded(target: &Target) -> Result<Self, ConnError> {
        let stream = TcpStream::connect(target.addr()).await.map_err(|e| ConnError::from_connect(&e))?;
        stream.set_nodelay(true).map_err(|e| ConnError::from_io(&e))?;
        let request = hyper::Request::builder()
            .method("GET")
            .uri(target.request_uri())
            .header(HOST, target.addr().to_string())
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "upgrade")
            .header("Sec-WebSocket-Key", fastwebsockets::handshake::generate_key())
            .header("Sec-WebSocket-Version", "13")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ConnError::Handshake(e.to_string()))?;
        let (ws, _response) = fastwebsockets::handshake::client(&SpawnExecutor, request, stream)
            .await
            .map_err(ConnError::from_ws)?;
        let (mut reader, writer) = ws.split(tokio::io::split);
        // Close and ping frames are answered here, so fastwebsockets never needs to write from the reader.
        reader.set_auto_close(false);
        reader.set_auto_pong(false);
        let mut conn = Self { reader, writer, out: Outbox::default() };

        match conn.next().await? {
            Incoming::Open => {}
            other => {
                return Err(ConnError::Protocol(format!(
                    "expected the Engine.IO open packet, got {other:?}"
                )));
            }
        }
        conn.out.push(b"40");
        conn.flush().await?;
        loop {
            match conn.next().await? {
                Incoming::Message(text) => return connect_answer(&text).map(|()| conn),
                Incoming::Ping => conn.out.push(b"3"),
                Incoming::WsPing(payload) => conn.pong_frame(payload).await?,
                Incoming::Open | Incoming::Other => {}
            }
            conn.flush().await?;
        }
    }

    /// Reads the next frame (see [`read_incoming`]).
    pub async fn next(&mut self) -> Result<Incoming, ConnError> {
        read_incoming(&mut self.reader).await
    }

    /// Writes every queued packet.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        self.out.flush(&mut self.writer).await
    }

    /// Answers a WebSocket ping frame.
    pub async fn pong_frame(&mut self, payload: BytesMut) -> Result<(), ConnError> {
        pong_frame(&mut self.writer, payload).await
    }

    /// Leaves as `socket.io-client`'s `disconnect()` does: Socket.IO DISCONNECT (`41`), then a WebSocket
    /// close frame; the TCP connection closes when the halves drop.
    pub async fn close(mut self) -> Result<(), ConnError> {
        self.out.push(b"41");
        self.flush().await?;
        self.writer.write_frame(Frame::close(1000, b"")).await.map_err(ConnError::from_ws)
    }

    /// The halves and the outbox at once, so a driver can read and write in one task.
    pub fn parts(&mut self) -> (&mut Reader, &mut Writer, &mut Outbox) {
        (&mut self.reader, &mut self.writer, &mut self.out)
    }
}

/// Reads the next frame and takes the Engine.IO framing off. Not cancel-safe: keep the future alive
/// until it completes (the driver pins it across its select loop).
pub async fn read_incoming<S: AsyncRead + Unpin>(
    reader: &mut WebSocketRead<S>,
) -> Result<Incoming, ConnError> {
    let mut no_obligated_send = |_: Frame<'_>| std::future::ready(Ok::<(), Infallible>(()));
    let frame = reader.read_frame(&mut no_obligated_send).await.map_err(ConnError::from_ws)?;
    if !frame.fin {
        return Err(ConnError::Protocol("fragmented frame".into()));
    }
    let payload = match frame.payload {
        Payload::Bytes(b) => b,
        other => BytesMut::from(&*other),
    };
    match frame.opcode {
        OpCode::Text => {}
        OpCode::Close => return Err(ConnError::Closed),
        OpCode::Ping => return Ok(Incoming::WsPing(payload)),
        OpCode::Binary | OpCode::Pong => return Ok(Incoming::Other),
        OpCode::Continuation => return Err(ConnError::Protocol("stray continuation frame".into())),
    }
    // fastwebsockets validated the UTF-8 of the text frame.
    let packet = engineio::Packet::decode_text_utf8(payload.freeze())
        .map_err(|e| ConnError::Protocol(format!("Engine.IO packet: {e}")))?;
    Ok(match packet {
        engineio::Packet::Open(_) => Incoming::Open,
        engineio::Packet::Ping(_) => Incoming::Ping,
        engineio::Packet::Message(text) => Incoming::Message(text),
        engineio::Packet::Close => return Err(ConnError::Closed),
        engineio::Packet::Pong(_)
        | engineio::Packet::Binary(_)
        | engineio::Packet::Upgrade
        | engineio::Packet::Noop => Incoming::Other,
    })
}

/// Answers a WebSocket ping frame (servers rarely send them: Engine.IO has its own ping).
pub async fn pong_frame(writer: &mut Writer, payload: BytesMut) -> Result<(), ConnError> {
    writer.write_frame(Frame::pong(Payload::Bytes(payload))).await.map_err(ConnError::from_ws)
}

/// Checks the server's answer to `40`: CONNECT to `/` is success, CONNECT_ERROR a rejection.
pub(crate) fn connect_answer(text: &[u8]) -> Result<(), ConnError> {
    let text = std::str::from_utf8(text).map_err(|_| ConnError::Protocol("packet is not UTF-8".into()))?;
    match socketio::Packet::decode(text) {
        Ok(socketio::Decoded::Complete(socketio::Packet::Connect { nsp, .. })) if nsp == "/" => Ok(()),
        Ok(socketio::Decoded::Complete(socketio::Packet::ConnectError { data, .. })) => {
            Err(ConnError::Rejected(data.to_string()))
        }
        _ => Err(ConnError::Protocol(format!("expected CONNECT to /, got {text:.80}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_answers() {
        assert!(connect_answer(br#"0{"sid":"abc"}"#).is_ok());
        assert!(matches!(connect_answer(br#"4{"message":"no"}"#), Err(ConnError::Rejected(_))));
        assert!(matches!(connect_answer(br#"0/admin,{"sid":"a"}"#), Err(ConnError::Protocol(_))));
        assert!(matches!(connect_answer(b"2[\"x\"]"), Err(ConnError::Protocol(_))));
    }
}
