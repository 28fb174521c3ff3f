//! A two-node ejabberd cluster on loopback, for the scale-out tests (issue 13).
//!
//! Each node is a [`TestEjabberd`] of its own (config, Mnesia spool, logs, c2s port on
//! 127.0.0.1), started from the repo's templates as a single test server is. What makes
//! them one cluster:
//! - long Erlang node names on two loopback addresses, `helpim-…@127.0.0.1` and
//!   `helpim-…@127.0.0.2` (Linux routes all of 127.0.0.0/8 to loopback, no set-up needed);
//! - one distribution port shared by both, each node listening on its own address: without
//!   epmd (`ERL_DIST_PORT`), a node reaches a peer at the peer's host and this one port;
//! - the cookie every ejabberd node of the machine shares (`~ejabberd/.erlang.cookie`);
//! - `ejabberdctl join_cluster` run on the second node (about 1 s): it copies the first
//!   node's Mnesia schema, so accounts and the MUC service are cluster-wide from then on.
//!
//! A room lives on the node it was created through; a client of either node can join it.
//! Killing a node (-9) takes its rooms and its client sessions with it; the other node goes
//! on. Nothing leaves 127.0.0.0/8.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use super::ejabberd::TestEjabberd;
use super::server::{PORT_ATTEMPTS, pick_port};

/// How long the nodes may take to see each other after `join_cluster`.
const JOIN_DEADLINE: Duration = Duration::from_secs(30);

/// Two ejabberd nodes joined in one cluster. Dropping it stops both.
pub struct TestCluster {
    /// The first node: Erlang distribution on 127.0.0.1.
    pub a: TestEjabberd,
    /// The second node, which joined the first: distribution on 127.0.0.2.
    pub b: TestEjabberd,
}

impl TestCluster {
    /// Starts both nodes and joins them, then waits until each lists both.
    pub fn start() -> TestCluster {
        let dist_port = shared_port();
        let a = TestEjabberd::start_node(Some(([127, 0, 0, 1], dist_port)));
        let b = TestEjabberd::start_node(Some(([127, 0, 0, 2], dist_port)));
        let (ok, output) = b.ctl(&["join_cluster", &a.node]);
        assert!(
            ok,
            "ejabberdctl join_cluster {} failed:\n{output}\n{}",
            a.node,
            b.log_tail(20)
        );
        let cluster = TestCluster { a, b };
        cluster.wait_joined();
        cluster
    }

    /// Waits until both nodes list both nodes as running members.
    fn wait_joined(&self) {
        let deadline = Instant::now() + JOIN_DEADLINE;
        loop {
            let listed = [&self.a, &self.b].map(|node| {
                let (ok, output) = node.ctl(&["list_cluster"]);
                ok && output.contains(&self.a.node) && output.contains(&self.b.node)
            });
            if listed == [true, true] {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the ejabberd nodes did not form a cluster within {JOIN_DEADLINE:?}\n{}\n{}",
                self.a.log_tail(20),
                self.b.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A port free on both 127.0.0.1 and 127.0.0.2, for the distribution of both nodes.
fn shared_port() -> u16 {
    for _ in 0..PORT_ATTEMPTS {
        let port = pick_port();
        let second = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), port));
        if second.is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2 in {PORT_ATTEMPTS} attempts");
}
