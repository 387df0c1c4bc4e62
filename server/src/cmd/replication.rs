//! `REPLICAOF`/`SLAVEOF`, `ROLE`, `REPLCONF`, `PSYNC`/`SYNC` and `WAIT`: the commands'
//! side of replication (see [`crate::replication`]).

use std::sync::Arc;

use sessiond_protocol::cmd::{Psync, ReplConf, ReplConfOption, ReplicaOf, Wait};
use sessiond_protocol::Frame;

use super::{Ctx, Reply, Then};
use crate::replication;
use crate::role::{self, Hello};

/// `REPLICAOF host port | NO ONE`.
pub fn replicaof(ctx: &mut Ctx<'_>, cmd: ReplicaOf) -> Frame {
    let shared = ctx.shared;
    let peer = ctx.conn.client().peer;
    match cmd {
        ReplicaOf::NoOne => {
            if shared.repl.promote(|| shared.dbs.feed().end_offset()) {
                shared.dbs.set_following(false);
                tracing::info!(%peer, "MASTER MODE enabled (user request)");
            }
            Frame::ok()
        }
        ReplicaOf::Primary { host, port } => {
            if ctx.conn.replica_hello().is_some() {
                return Frame::error("ERR Command is not valid when client is a replica.");
            }
            if !follow(shared, host.clone(), port) {
                return Frame::simple("OK Already connected to specified master");
            }
            tracing::info!(%peer, %host, port, "REPLICAOF enabled (user request)");
            Frame::ok()
        }
    }
}

/// Makes the node follow `host`:`port` (REPLICAOF, `--replicaof`); `false` if it already does.
pub fn follow(shared: &Arc<crate::shared::Shared>, host: String, port: u16) -> bool {
    // Before the gate lets a writable replica's clients write: the keys they note are then
    // never taken for a primary's leftovers (`Databases::run_active_expiry`).
    shared.dbs.set_following(true);
    let task_shared = shared.clone();
    shared.repl.follow(host, port, move |link| {
        tokio::spawn(replication::replica::run(task_shared, link))
    })
}

/// `ROLE`.
pub fn role(ctx: &mut Ctx<'_>) -> Frame {
    ctx.shared.repl.role(ctx.shared.dbs.feed().end_offset())
}

/// `REPLCONF option value [...]`: what a replica says before its PSYNC. `ACK` and `GETACK`
/// reach here only from a connection that is no replica link (the link reads them itself),
/// and are ignored without a reply, as Redis ignores them.
pub fn replconf(ctx: &mut Ctx<'_>, cmd: ReplConf) -> Reply {
    let mut replied = true;
    for option in cmd.options {
        match option {
            ReplConfOption::ListeningPort(port) => ctx.conn.replica_hello_mut().port = port,
            ReplConfOption::IpAddress(ip) => ctx.conn.replica_hello_mut().ip = Some(ip),
            ReplConfOption::Capa(_) => {}
            ReplConfOption::Ack(_) | ReplConfOption::GetAck => replied = false,
        }
    }
    if replied {
        Frame::ok().into()
    } else {
        Reply {
            frame: None,
            then: Then::Continue,
        }
    }
}

/// `PSYNC replid offset` / `SYNC`: the connection becomes the replica's link once its replies
/// so far are written ([`Then::Replicate`]).
pub fn psync(ctx: &mut Ctx<'_>, cmd: Psync) -> Reply {
    // As Redis: a replica serves replicas of its own only while its link is up. Between, its
    // history may be about to change (a full sync empties and reloads the keyspace without
    // recording it), and a replica resumed from it then would go on from a history that ends.
    let following = ctx.shared.repl.link();
    if following.is_some_and(|link| link.state() != role::LinkState::Connected)
        || ctx.shared.repl.gate() == role::Gate::Loading
    {
        return Frame::error("NOMASTERLINK Can't SYNC while not connected with my master").into();
    }
    ctx.conn.set_psync(cmd);
    Reply {
        frame: None,
        then: Then::Replicate,
    }
}

/// `WAIT numreplicas timeout`: the count at once when enough replicas acknowledged the feed's
/// end, else the connection waits ([`Then::Wait`]), not the thread.
pub fn wait(ctx: &mut Ctx<'_>, cmd: Wait) -> Reply {
    let repl = &ctx.shared.repl;
    if repl.link().is_some() {
        return Frame::error(
            "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 \
             if a replica is configured to be writable (which is not the default) writes to \
             replicas are just local and are not propagated.",
        )
        .into();
    }
    // Every write this connection made is below the feed's end now (a conservative stand-in
    // for Redis's per-client offset: it may wait for others' writes too).
    let offset = ctx.shared.dbs.feed().end_offset();
    let wanted = usize::try_from(cmd.replicas).unwrap_or(0);
    let acked = repl.acked_at_least(offset);
    if acked >= wanted {
        return Frame::Integer(acked as i64).into();
    }
    Reply {
        frame: None,
        then: Then::Wait(WaitFor {
            offset,
            replicas: wanted,
            timeout_ms: cmd.timeout_ms,
        }),
    }
}

/// What a WAIT that blocks waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitFor {
    /// The feed offset the replicas must acknowledge.
    pub offset: u64,
    /// How many must.
    pub replicas: usize,
    /// The most it waits, ms; 0: forever.
    pub timeout_ms: u64,
}

impl WaitFor {
    /// WAIT's reply without waiting (inside EXEC or a script): how many acknowledged now.
    pub fn now(self, repl: &role::Replication) -> Frame {
        Frame::Integer(repl.acked_at_least(self.offset) as i64)
    }

    /// Waits (in the connection's task) and returns WAIT's reply: how many replicas
    /// acknowledged when enough did or the timeout passed.
    pub async fn run(self, shared: &crate::shared::Shared) -> Frame {
        let repl = &shared.repl;
        let feed = shared.dbs.feed();
        // The replicas are asked to acknowledge once the writes are published (the pump
        // gathers for up to a millisecond): asked before, they would acknowledge an offset
        // short of them, and the WAIT would wait for the next periodic request.
        let wait = async {
            feed.wait_published(self.offset).await;
            repl.wait_for_acks(self.offset, self.replicas).await
        };
        let acked = if self.timeout_ms == 0 {
            wait.await
        } else {
            match tokio::time::timeout(std::time::Duration::from_millis(self.timeout_ms), wait)
                .await
            {
                Ok(acked) => acked,
                Err(_) => repl.acked_at_least(self.offset),
            }
        };
        Frame::Integer(acked as i64)
    }
}

impl super::ConnState {
    /// What the connection said as a replica (REPLCONF), if it did.
    pub fn replica_hello(&self) -> Option<&Hello> {
        self.replica.as_deref().map(|(hello, _)| hello)
    }

    fn replica_hello_mut(&mut self) -> &mut Hello {
        &mut self.replica.get_or_insert_with(Default::default).0
    }

    fn set_psync(&mut self, psync: Psync) {
        self.replica.get_or_insert_with(Default::default).1 = Some(psync);
    }

    /// The REPLCONF and PSYNC of a connection that becomes a replica's link.
    pub fn take_psync(&mut self) -> Option<(Hello, Psync)> {
        let (hello, psync) = *self.replica.take()?;
        Some((hello, psync?))
    }
}
