//! What tests need of an XMPP server, whichever server it is (Prosody or ejabberd).
//!
//! Scenarios take a `&dyn XmppServer` so that the same test runs against every server the
//! bot supports.

/// A test XMPP server on loopback, plaintext.
pub trait XmppServer {
    /// Short name for messages ("prosody", "ejabberd").
    fn name(&self) -> &'static str;
    /// The client-to-server port on 127.0.0.1.
    fn port(&self) -> u16;
    /// The user domain, e.g. `localhost`.
    fn domain(&self) -> &str;
    /// The MUC service domain, e.g. `conference.localhost`.
    fn muc_domain(&self) -> &str;
    /// Creates an account (works while the server runs); panics with the output on failure.
    fn register(&self, user: &str, password: &str);
    /// `user@domain`.
    fn jid(&self, user: &str) -> String {
        format!("{user}@{}", self.domain())
    }
    /// The end of the server's log, for failure messages.
    fn log_tail(&self, lines: usize) -> String;
}

impl XmppServer for super::prosody::TestProsody {
    fn name(&self) -> &'static str {
        "prosody"
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn domain(&self) -> &str {
        &self.domain
    }
    fn muc_domain(&self) -> &str {
        &self.muc_domain
    }
    fn register(&self, user: &str, password: &str) {
        super::prosody::TestProsody::register(self, user, password)
    }
    fn log_tail(&self, lines: usize) -> String {
        super::prosody::TestProsody::log_tail(self, lines)
    }
}
