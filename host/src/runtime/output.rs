//! Guest stdout/stderr into the host log, a line at a time, tagged with the
//! function name and invocation id.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::Invocation;

#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A guest's stdout or stderr.
#[derive(Clone)]
pub struct GuestOutput {
    function: Arc<str>,
    invocation: Arc<str>,
    stream: Stream,
}

impl GuestOutput {
    pub fn new(invocation: &Invocation, stream: Stream) -> Self {
        GuestOutput {
            function: invocation.function.clone(),
            invocation: invocation.id.clone(),
            stream,
        }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            out: self.clone(),
            pending: Vec::new(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let (f, id) = (&*self.function, &*self.invocation);
        match self.stream {
            Stream::Stdout => {
                tracing::info!(target: "function", function = f, invocation = id, "{text}")
            }
            Stream::Stderr => {
                tracing::error!(target: "function", function = f, invocation = id, "{text}")
            }
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Buffers a partial line until its newline (or until the stream is dropped).
struct LineWriter {
    out: GuestOutput,
    pending: Vec<u8>,
}

/// A line longer than this is emitted in pieces rather than held.
const MAX_LINE: usize = 16 * 1024;

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let rest = self.pending.split_off(i + 1);
            self.out.emit(&self.pending[..i]);
            self.pending = rest;
        }
        if self.pending.len() > MAX_LINE {
            self.flush_partial();
        }
    }

    fn flush_partial(&mut self) {
        if !self.pending.is_empty() {
            self.out.emit(&self.pending);
            self.pending.clear();
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Rust's stdout flushes after every line; a partial line waits for its end.
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().flush_partial();
        Poll::Ready(Ok(()))
    }
}
