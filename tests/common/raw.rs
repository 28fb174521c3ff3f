//! A raw XMPP client: a TCP socket that logs in (SASL PLAIN on plaintext loopback, as the
//! test servers allow) and then writes whatever XML a test hands it, byte for byte. What
//! a hostile or broken client sends, including what no XMPP library would produce (a
//! presence `type` that RFC 6121 does not define).
//!
//! It reads only as much as it needs: the answers of the login, and then text searched
//! for a marker (`wait_for_text`), with a deadline.

use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::server::XmppServer;

/// How long the login and every wait may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// A logged-in raw client.
pub struct RawClient {
    stream: TcpStream,
    /// Text received and not yet consumed by a wait.
    received: String,
    /// The full JID the server bound.
    pub jid: String,
}

impl RawClient {
    /// Logs `user` in on `server` with SASL PLAIN and binds a resource.
    pub async fn connect(server: &dyn XmppServer, user: &str, password: &str) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .expect("connect to the XMPP server");
        let mut client = RawClient {
            stream,
            received: String::new(),
            jid: String::new(),
        };
        let domain = server.domain().to_owned();
        client.open_stream(&domain).await;
        client.wait_for_text("</stream:features>").await;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        client
            .send(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
            ))
            .await;
        let answer = client
            .wait_for_text("urn:ietf:params:xml:ns:xmpp-sasl")
            .await;
        client.wait_for_text(">").await;
        assert!(
            !answer.contains("<failure"),
            "{user}: SASL PLAIN refused: {}",
            client.received
        );
        client.received.clear();
        client.open_stream(&domain).await;
        client.wait_for_text("</stream:features>").await;
        client
            .send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            .await;
        let bound = client.wait_for_text("</jid>").await;
        let start = bound.rfind("<jid>").expect("a bound JID") + "<jid>".len();
        client.jid = bound[start..bound.len() - "</jid>".len()].to_owned();
        client.wait_for_text("</iq>").await;
        client
    }

    async fn open_stream(&mut self, domain: &str) {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xml:lang='en' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        ))
        .await;
    }

    /// Writes `xml` to the stream as it is.
    pub async fn send(&mut self, xml: &str) {
        self.stream
            .write_all(xml.as_bytes())
            .await
            .expect("write to the XMPP server");
    }

    /// Reads until `marker` has arrived; returns everything up to and including it, which
    /// is consumed. Panics after the deadline with what was received.
    pub async fn wait_for_text(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(at) = self.received.find(marker) {
                let end = at + marker.len();
                let head = self.received[..end].to_owned();
                self.received.drain(..end);
                return head;
            }
            let mut chunk = [0u8; 4096];
            let read = timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "raw client: no {marker:?} within {DEADLINE:?}; received: {}",
                        self.received
                    )
                })
                .expect("read from the XMPP server");
            assert!(
                read > 0,
                "raw client: stream closed; received: {}",
                self.received
            );
            self.received
                .push_str(&String::from_utf8_lossy(&chunk[..read]));
        }
    }
}
