//! The set commands: `SADD`, `SREM`, `SISMEMBER`, `SMISMEMBER`, `SCARD`, `SMEMBERS`, `SPOP`,
//! `SRANDMEMBER`, `SSCAN`, and the set algebra (`SINTER`, `SUNION`, `SDIFF` and their
//! `...STORE` forms).
//!
//! A set is a [`Fields`] whose values are all empty (`store/fields.rs`). Replies whose size the
//! data decides are measured against the connection's output limit before anything is written,
//! and written straight into the output (no reply frame per member). Random picks walk the set
//! (the map keeps no positions to draw from), so SPOP and SRANDMEMBER are O(members), not O(1)
//! as in Redis. The algebra reads each key under its own shard lock, one after the other: like
//! MGET, it is not isolated from writers of the other keys.

use bytes::Bytes;
use sessiond_protocol::cmd::{KeyMembers, KeyOnly, SPop, SRandMember, SScan, SetAlgebra, SetOp};
use sessiond_protocol::{put_bulk, put_header, Frame, ProtocolVersion};

use super::{bulk_size, header_size, wrongtype, Ctx, Reply};
use crate::glob;
use crate::notify::Class;
use crate::store::evict::random_below;
use crate::store::{owned, Entry, Fields, Value, ValueMut, ValueRef};

/// The most bytes a negative-count SRANDMEMBER writes when the output has no hard limit: the
/// picks are the client's choice and unbounded otherwise.
const MAX_UNLIMITED_REPLY: usize = 1 << 30;
/// Picks of a negative-count SRANDMEMBER drawn per walk of the set: memory per step.
const PICKS_PER_WALK: usize = 1 << 16;

/// The tag of a reply Redis 7 sends as a set: `~` in RESP3, an array in RESP2.
fn set_tag(ctx: &Ctx<'_>) -> u8 {
    match ctx.conn.version() {
        ProtocolVersion::Resp3 => b'~',
        ProtocolVersion::Resp2 => b'*',
    }
}

/// The bytes of an aggregate of `members`.
fn members_size<'a>(count: usize, members: impl Iterator<Item = &'a Bytes>) -> usize {
    header_size(count) + members.map(|m| bulk_size(m.len())).sum::<usize>()
}

/// Runs `f` on the set at `key`; `missing` when there is none, WRONGTYPE for another type.
fn with_set(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    missing: impl FnOnce() -> Reply,
    f: impl FnOnce(&mut Ctx<'_>, &Fields) -> Reply,
) -> Reply {
    let store = ctx.store;
    let now_ms = ctx.now_ms;
    let reply = store.read(key, now_ms, |entry| {
        entry.map(|entry| match entry.value() {
            ValueRef::Set(members) => f(ctx, members),
            _ => wrongtype().into(),
        })
    });
    ctx.hit(reply.is_some());
    reply.unwrap_or_else(missing)
}

/// `SADD key member [...]`: the number of members added.
pub fn sadd(ctx: &mut Ctx<'_>, cmd: KeyMembers) -> Frame {
    let add = |set: &mut Fields| {
        let mut added = 0;
        for member in &cmd.members {
            if !set.contains_key(member) {
                set.insert_member(owned(member));
                added += 1;
            }
        }
        Frame::Integer(added)
    };
    let reply = ctx
        .store
        .upsert(&cmd.key, ctx.now_ms, |current| match current {
            None => {
                let mut set = Fields::default();
                let reply = add(&mut set);
                (Some(Entry::new(Value::Set(Box::new(set)), 0)), reply)
            }
            Some(mut entry) => match entry.value_mut() {
                ValueMut::Set(set) => (None, add(set)),
                _ => (None, wrongtype()),
            },
        });
    if matches!(reply, Frame::Integer(added) if added > 0) {
        ctx.store.notify(Class::SET, "sadd", &cmd.key);
    }
    reply
}

/// `SREM key member [...]`: the number of members removed. A set left empty is deleted.
pub fn srem(ctx: &mut Ctx<'_>, cmd: KeyMembers) -> Frame {
    let reply = ctx
        .store
        .modify(&cmd.key, ctx.now_ms, |mut entry| match entry.value_mut() {
            ValueMut::Set(set) => {
                let removed = cmd
                    .members
                    .iter()
                    .filter(|m| set.remove(*m).is_some())
                    .count();
                let emptied = set.is_empty();
                (
                    emptied,
                    (Frame::Integer(removed as i64), removed > 0, emptied),
                )
            }
            _ => (false, (wrongtype(), false, false)),
        });
    let Some((reply, removed, emptied)) = reply else {
        return Frame::Integer(0);
    };
    if removed {
        ctx.store.notify(Class::SET, "srem", &cmd.key);
    }
    if emptied {
        ctx.store.notify(Class::GENERIC, "del", &cmd.key);
    }
    reply
}

/// `SISMEMBER key member`: 1 or 0.
pub fn sismember(ctx: &mut Ctx<'_>, cmd: KeyMembers) -> Reply {
    let member = cmd.members.first();
    with_set(
        ctx,
        &cmd.key,
        || Frame::Integer(0).into(),
        |_, set| Frame::Integer(i64::from(member.is_some_and(|m| set.contains_key(m)))).into(),
    )
}

/// `SMISMEMBER key member [...]`: 1 or 0 for each member, in order.
pub fn smismember(ctx: &mut Ctx<'_>, cmd: KeyMembers) -> Reply {
    let answer = |set: Option<&Fields>| {
        Frame::Array(
            cmd.members
                .iter()
                .map(|m| Frame::Integer(i64::from(set.is_some_and(|s| s.contains_key(m)))))
                .collect(),
        )
        .into()
    };
    with_set(ctx, &cmd.key, || answer(None), |_, set| answer(Some(set)))
}

/// `SCARD key`: the number of members, 0 when missing.
pub fn scard(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Reply {
    with_set(
        ctx,
        &cmd.key,
        || Frame::Integer(0).into(),
        |_, set| Frame::Integer(set.len() as i64).into(),
    )
}

/// `SMEMBERS key`: every member, as a set (RESP3) or an array. A reply that would take the
/// connection's output past its limit is measured, not written.
pub fn smembers(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Reply {
    with_set(
        ctx,
        &cmd.key,
        || Frame::Set(Vec::new()).into(),
        |ctx, set| write_members(ctx, set.len(), set.keys()),
    )
}

/// Writes `count` members as a set reply, if it fits.
fn write_members<'a>(
    ctx: &mut Ctx<'_>,
    count: usize,
    members: impl Iterator<Item = &'a Bytes> + Clone,
) -> Reply {
    if !ctx.fits(members_size(count, members.clone())) {
        return Reply::over_limit();
    }
    let tag = set_tag(ctx);
    put_header(ctx.out, tag, count);
    for member in members {
        put_bulk(ctx.out, b'$', member);
    }
    Reply::written()
}

/// `count` distinct members of `set` (`count` < its size), each subset as likely as any
/// other: selection sampling (Knuth's algorithm S) over one walk, in the walk's order.
fn sample(set: &Fields, count: usize) -> Vec<&Bytes> {
    let mut chosen = Vec::with_capacity(count);
    let mut left = set.len();
    for member in set.keys() {
        if chosen.len() == count {
            break;
        }
        if (random_below(left as u64) as usize) < count - chosen.len() {
            chosen.push(member);
        }
        left -= 1;
    }
    chosen
}

/// One member, uniformly at random (`set` is never empty: an empty set is deleted).
fn pick(set: &Fields) -> Option<&Bytes> {
    set.nth_key(random_below(set.len() as u64) as usize)
}

/// `SPOP key [count]`: removes and returns random members. Without a count, one member (nil
/// when missing); with one, a set of at most `count` members. A set left empty is deleted.
pub fn spop(ctx: &mut Ctx<'_>, cmd: SPop) -> Reply {
    let out_room = ctx.out_limit.saturating_sub(ctx.out.len());
    // The reply, whether members were popped, whether the set was emptied (and deleted).
    let reply = ctx.store.modify(&cmd.key, ctx.now_ms, |mut entry| {
        let ValueMut::Set(set) = entry.value_mut() else {
            return (false, (wrongtype().into(), false, false));
        };
        let Some(count) = cmd.count else {
            let Some(member) = pick(set).cloned() else {
                return (set.is_empty(), (Frame::Null.into(), false, set.is_empty()));
            };
            set.remove(&member);
            let emptied = set.is_empty();
            return (emptied, (Frame::Bulk(member).into(), true, emptied));
        };
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let chosen: Vec<&Bytes> = if count >= set.len() {
            set.keys().collect()
        } else {
            sample(set, count)
        };
        if members_size(chosen.len(), chosen.iter().copied()) > out_room {
            // Nothing is removed (or copied) that the client would not see.
            return (false, (Reply::over_limit(), false, false));
        }
        let chosen: Vec<Bytes> = chosen.into_iter().cloned().collect();
        for member in &chosen {
            set.remove(member);
        }
        let popped = !chosen.is_empty();
        let frame = Frame::Set(chosen.into_iter().map(Frame::Bulk).collect());
        let emptied = set.is_empty();
        (emptied, (frame.into(), popped, emptied))
    });
    ctx.hit(reply.is_some());
    let Some((reply, popped, emptied)) = reply else {
        return match cmd.count {
            None => Frame::Null.into(),
            Some(_) => Frame::Set(Vec::new()).into(),
        };
    };
    if popped {
        ctx.store.notify(Class::SET, "spop", &cmd.key);
    }
    if emptied {
        ctx.store.notify(Class::GENERIC, "del", &cmd.key);
    }
    reply
}

/// `SRANDMEMBER key [count]`: random members, left in place. Without a count, one (nil when
/// missing); with a positive count, that many distinct ones (the whole set at most); with a
/// negative one, that many picks, each from the whole set, in random order.
pub fn srandmember(ctx: &mut Ctx<'_>, cmd: SRandMember) -> Reply {
    let missing = move || match cmd.count {
        None => Frame::Null.into(),
        Some(_) => Frame::Array(Vec::new()).into(),
    };
    with_set(ctx, &cmd.key, missing, |ctx, set| match cmd.count {
        None => pick(set)
            .map_or(Frame::Null, |m| Frame::Bulk(m.clone()))
            .into(),
        Some(0) => Frame::Array(Vec::new()).into(),
        Some(count) if count > 0 => {
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            if count >= set.len() {
                write_array(ctx, set.len(), set.keys())
            } else {
                let chosen = sample(set, count);
                write_array(ctx, chosen.len(), chosen.iter().copied())
            }
        }
        Some(count) => write_picks(ctx, set, count.unsigned_abs()),
    })
}

/// Writes `count` members as an array reply, if it fits.
fn write_array<'a>(
    ctx: &mut Ctx<'_>,
    count: usize,
    members: impl Iterator<Item = &'a Bytes> + Clone,
) -> Reply {
    if !ctx.fits(members_size(count, members.clone())) {
        return Reply::over_limit();
    }
    put_header(ctx.out, b'*', count);
    for member in members {
        put_bulk(ctx.out, b'$', member);
    }
    Reply::written()
}

/// Writes `count` members of `set` drawn with replacement, in random order, as an array; over
/// the output limit (or [`MAX_UNLIMITED_REPLY`] without one), nothing is written and the
/// client is closed as for any reply over the limit. Picks are drawn [`PICKS_PER_WALK`] at a
/// time, sorted, and found in one walk of the set, then shuffled.
fn write_picks(ctx: &mut Ctx<'_>, set: &Fields, count: u64) -> Reply {
    let limit = ctx
        .out_limit
        .min(ctx.out.len().saturating_add(MAX_UNLIMITED_REPLY));
    // Each pick takes at least `$0\r\n\r\n`.
    let least = usize::try_from(count)
        .ok()
        .and_then(|count| count.checked_mul(bulk_size(0)));
    if least.is_none_or(|least| ctx.out.len().saturating_add(least) > limit) {
        return Reply::over_limit();
    }
    let mark = ctx.out.len();
    put_header(ctx.out, b'*', count as usize);
    let mut left = count as usize;
    let mut positions = Vec::with_capacity(left.min(PICKS_PER_WALK));
    let mut picks: Vec<&Bytes> = Vec::with_capacity(left.min(PICKS_PER_WALK));
    while left > 0 {
        let step = left.min(PICKS_PER_WALK);
        left -= step;
        positions.clear();
        positions.extend((0..step).map(|_| random_below(set.len() as u64) as usize));
        positions.sort_unstable();
        picks.clear();
        let mut wanted = positions.iter().peekable();
        for (at, member) in set.keys().enumerate() {
            while wanted.next_if(|&&position| position == at).is_some() {
                picks.push(member);
            }
            if wanted.peek().is_none() {
                break;
            }
        }
        // Fisher-Yates, so that repeated members are not next to each other.
        for i in (1..picks.len()).rev() {
            picks.swap(i, random_below(i as u64 + 1) as usize);
        }
        for member in &picks {
            if ctx.out.len().saturating_add(bulk_size(member.len())) > limit {
                ctx.out.truncate(mark);
                return Reply::over_limit();
            }
            put_bulk(ctx.out, b'$', member);
        }
    }
    Reply::written()
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]`: one step, `[next cursor, [members...]]`.
/// COUNT is clamped to `scan-max-count`; a step walks the set but copies at most about COUNT
/// members (see [`Fields::scan_keys`]).
pub fn sscan(ctx: &mut Ctx<'_>, cmd: SScan) -> Reply {
    let config = &ctx.shared.config;
    let pattern = match cmd.scan.pattern.as_deref() {
        None => None,
        Some(pattern) => match glob::key_pattern(pattern, config.max_pattern_len) {
            Ok(pattern) => pattern,
            Err(too_long) => return Frame::error(too_long.to_string()).into(),
        },
    };
    let count = cmd.scan.count.min(config.scan_max_count);
    let reply = |next: u64, members: Vec<Frame>| -> Reply {
        let cursor = Bytes::copy_from_slice(itoa::Buffer::new().format(next).as_bytes());
        Frame::Array(vec![Frame::Bulk(cursor), Frame::Array(members)]).into()
    };
    with_set(
        ctx,
        &cmd.key,
        || reply(0, Vec::new()),
        |ctx, set| {
            let (next, mut members) = set.scan_keys(cmd.scan.cursor, count);
            if let Some(pattern) = &pattern {
                members.retain(|m| pattern.matches(m));
            }
            let size = header_size(2)
                + bulk_size(20)
                + members_size(members.len(), members.iter().copied());
            if !ctx.fits(size) {
                return Reply::over_limit();
            }
            reply(
                next,
                members.into_iter().cloned().map(Frame::Bulk).collect(),
            )
        },
    )
}

/// What one key of the algebra holds.
enum Operand {
    /// No key (or an empty set): an empty set.
    Missing,
    /// A set of this many members.
    Set(usize),
}

/// `SINTER`, `SUNION`, `SDIFF` (the result as a set reply) and their `...STORE` forms (the
/// result stored at the destination, which loses any deadline; its size is the reply). Every
/// key is checked first: one that holds another type answers WRONGTYPE, as in Redis, even when
/// the result is already known to be empty.
pub fn algebra(ctx: &mut Ctx<'_>, cmd: SetAlgebra) -> Reply {
    let mut operands = Vec::with_capacity(cmd.keys.len());
    for key in &cmd.keys {
        let operand = ctx.store.read(key, ctx.now_ms, |entry| match entry {
            None => Ok(Operand::Missing),
            Some(entry) => match entry.value() {
                ValueRef::Set(set) => Ok(Operand::Set(set.len())),
                _ => Err(()),
            },
        });
        match operand {
            Ok(operand) => {
                ctx.hit(matches!(operand, Operand::Set(_)));
                operands.push(operand);
            }
            Err(()) => return wrongtype().into(),
        }
    }
    let result = match compute(ctx, &cmd, &operands) {
        Ok(result) => result,
        Err(()) => return wrongtype().into(),
    };
    match cmd.destination {
        None => write_members(ctx, result.len(), result.keys()),
        Some(destination) => store_result(ctx, cmd.op, &destination, result).into(),
    }
}

/// Reads the set at `key` with `f`: an empty set if it is gone, an error if it changed type
/// since it was checked.
fn with_operand<R>(
    ctx: &Ctx<'_>,
    key: &[u8],
    f: impl FnOnce(Option<&Fields>) -> R,
) -> Result<R, ()> {
    ctx.store.read(key, ctx.now_ms, |entry| match entry {
        None => Ok(f(None)),
        Some(entry) => match entry.value() {
            ValueRef::Set(set) => Ok(f(Some(set))),
            _ => Err(()),
        },
    })
}

/// The result of the operation, its members shared with the sets they came from.
fn compute(ctx: &Ctx<'_>, cmd: &SetAlgebra, operands: &[Operand]) -> Result<Fields, ()> {
    let mut result = Fields::default();
    match cmd.op {
        SetOp::Union => {
            for key in &cmd.keys {
                with_operand(ctx, key, |set| {
                    for member in set.into_iter().flat_map(Fields::keys) {
                        if !result.contains_key(member) {
                            result.insert_member(member.clone());
                        }
                    }
                })?;
            }
        }
        SetOp::Inter => {
            let sizes = operands.iter().map(|operand| match operand {
                Operand::Missing => 0,
                Operand::Set(len) => *len,
            });
            // Start from the smallest set: the result is no larger.
            let Some((smallest, _)) = sizes.enumerate().min_by_key(|&(_, len)| len) else {
                return Ok(result);
            };
            if matches!(operands.get(smallest), None | Some(Operand::Missing)) {
                return Ok(result);
            }
            let Some(first) = cmd.keys.get(smallest) else {
                return Ok(result);
            };
            result = with_operand(ctx, first, |set| set.cloned().unwrap_or_default())?;
            for (at, key) in cmd.keys.iter().enumerate() {
                if at == smallest || result.is_empty() {
                    continue;
                }
                let gone: Vec<Bytes> = with_operand(ctx, key, |set| {
                    result
                        .keys()
                        .filter(|m| !set.is_some_and(|s| s.contains_key(*m)))
                        .cloned()
                        .collect()
                })?;
                for member in gone {
                    result.remove(&member);
                }
            }
        }
        SetOp::Diff => {
            let Some(first) = cmd.keys.first() else {
                return Ok(result);
            };
            result = with_operand(ctx, first, |set| set.cloned().unwrap_or_default())?;
            for key in cmd.keys.iter().skip(1) {
                if result.is_empty() {
                    break;
                }
                let gone: Vec<Bytes> = with_operand(ctx, key, |set| {
                    let Some(set) = set else {
                        return Vec::new();
                    };
                    if set.len() < result.len() {
                        set.keys()
                            .filter(|m| result.contains_key(*m))
                            .cloned()
                            .collect()
                    } else {
                        result
                            .keys()
                            .filter(|m| set.contains_key(*m))
                            .cloned()
                            .collect()
                    }
                })?;
                for member in gone {
                    result.remove(&member);
                }
            }
        }
    }
    Ok(result)
}

/// Stores `result` at `destination` (deleting it when the result is empty); replies with the
/// result's size. A session is not overwritten (WRONGTYPE): sessions end only by their own
/// commands, their timeouts, DEL or FLUSHALL.
fn store_result(ctx: &mut Ctx<'_>, op: SetOp, destination: &[u8], result: Fields) -> Frame {
    let size = Frame::Integer(result.len() as i64);
    if result.is_empty() {
        let refused = ctx.store.modify(destination, ctx.now_ms, |entry| {
            let session = entry.is_session();
            (!session, session)
        });
        return match refused {
            Some(true) => wrongtype(),
            Some(false) => {
                // An empty result deletes the destination: Redis announces `del`.
                ctx.store.notify(Class::GENERIC, "del", destination);
                size
            }
            None => size,
        };
    }
    let reply = ctx
        .store
        .upsert(destination, ctx.now_ms, |current| match current {
            Some(node) if node.is_session() => (None, wrongtype()),
            _ => (Some(Entry::new(Value::Set(Box::new(result)), 0)), size),
        });
    if let Frame::Integer(_) = reply {
        let event = match op {
            SetOp::Inter => "sinterstore",
            SetOp::Union => "sunionstore",
            SetOp::Diff => "sdiffstore",
        };
        ctx.store.notify(Class::SET, event, destination);
    }
    reply
}
