//! A command's flags and ACL categories as typed sets of bits, which print Redis's names.
//!
//! The dispatch tests a bit (`no_auth`, `denyoom`, `write`) rather than comparing strings;
//! `COMMAND INFO`, `COMMAND DOCS` and the ACL checks read the names back in the order each set
//! declares its members, which is the order Redis prints them in.

use std::fmt;

/// Declares a set of named bits: its members as constants and the names they print, in order.
macro_rules! name_set {
    (
        $(#[$meta:meta])*
        $set:ident {
            $($(#[$doc:meta])* $member:ident = $bit:literal, $name:literal;)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
        pub struct $set(u32);

        impl $set {
            $($(#[$doc])* pub const $member: $set = $set(1 << $bit);)*

            /// The empty set.
            pub const NONE: $set = $set(0);

            /// Every member with its name, in printing order.
            const MEMBERS: &'static [($set, &'static str)] = &[$(($set::$member, $name)),*];

            /// This set and `other`'s members.
            #[must_use]
            pub const fn with(self, other: $set) -> $set {
                $set(self.0 | other.0)
            }

            /// Whether every member of `other` is in this set.
            #[inline]
            pub const fn contains(self, other: $set) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether this set and `other` share a member.
            #[inline]
            pub const fn intersects(self, other: $set) -> bool {
                self.0 & other.0 != 0
            }

            /// The names of the members, in the order Redis prints them.
            pub fn names(self) -> impl Iterator<Item = &'static str> {
                Self::MEMBERS
                    .iter()
                    .filter(move |(member, _)| self.contains(*member))
                    .map(|(_, name)| *name)
            }
        }

        impl fmt::Debug for $set {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_set().entries(self.names()).finish()
            }
        }
    };
}

name_set! {
    /// Redis's command flags (`COMMAND INFO`'s third element), those the table uses.
    CommandFlags {
        /// `write`: may change the keyspace.
        WRITE = 0, "write";
        /// `readonly`: only reads the keyspace.
        READONLY = 1, "readonly";
        /// `denyoom`: may add data, so it is refused (or evicts first) at `maxmemory`.
        DENYOOM = 2, "denyoom";
        /// `admin`: an administrative command.
        ADMIN = 3, "admin";
        /// `pubsub`: a pub/sub command.
        PUBSUB = 16, "pubsub";
        /// `noscript`: not allowed in scripts.
        NOSCRIPT = 4, "noscript";
        /// `blocking`: may block the client (WAIT).
        BLOCKING = 19, "blocking";
        /// `loading`: allowed while the dataset loads.
        LOADING = 5, "loading";
        /// `stale`: allowed on a replica with stale data.
        STALE = 6, "stale";
        /// `skip_monitor`: not shown by MONITOR (EVAL: its commands are).
        SKIP_MONITOR = 13, "skip_monitor";
        /// `skip_slowlog`: not logged in the slow log (EXEC: its commands are).
        SKIP_SLOWLOG = 12, "skip_slowlog";
        /// `fast`: bounded by its arguments and reply.
        FAST = 7, "fast";
        /// `no_auth`: allowed before the connection authenticates.
        NO_AUTH = 8, "no_auth";
        /// `may_replicate`: may produce replication traffic (PUBLISH).
        MAY_REPLICATE = 17, "may_replicate";
        /// `sentinel`: also a command of Redis Sentinel (ROLE).
        SENTINEL = 20, "sentinel";
        /// `no_mandatory_keys`: may be given no key (EVAL with numkeys 0).
        NO_MANDATORY_KEYS = 14, "no_mandatory_keys";
        /// `no_async_loading`: not allowed while loading asynchronously.
        NO_ASYNC_LOADING = 9, "no_async_loading";
        /// `no_multi`: not allowed in a transaction.
        NO_MULTI = 10, "no_multi";
        /// `movablekeys`: where the keys are depends on the arguments (EVAL's numkeys).
        MOVABLEKEYS = 15, "movablekeys";
        /// `allow_busy`: allowed while a script is busy.
        ALLOW_BUSY = 11, "allow_busy";
        /// `protected`: Redis refuses it unless `enable-debug-command` allows it (DEBUG).
        PROTECTED = 18, "protected";
    }
}

name_set! {
    /// Redis's ACL categories (`COMMAND INFO`'s seventh element), those the table uses.
    AclCategories {
        /// `@keyspace`: works on keys whatever their type.
        KEYSPACE = 0, "@keyspace";
        /// `@read`: reads data.
        READ = 1, "@read";
        /// `@write`: writes data.
        WRITE = 2, "@write";
        /// `@set`: works on sets (declared here, with a later bit, to print where Redis
        /// prints it).
        SET = 11, "@set";
        /// `@hash`: works on hashes.
        HASH = 3, "@hash";
        /// `@string`: works on strings.
        STRING = 4, "@string";
        /// `@session`: sessiond's own, works on sessions.
        SESSION = 5, "@session";
        /// `@pubsub`: pub/sub.
        PUBSUB = 14, "@pubsub";
        /// `@admin`: an administrative command.
        ADMIN = 6, "@admin";
        /// `@fast`: bounded by its arguments and reply.
        FAST = 7, "@fast";
        /// `@slow`: not `@fast`.
        SLOW = 8, "@slow";
        /// `@dangerous`: may be harmful to the server or its data.
        DANGEROUS = 9, "@dangerous";
        /// `@connection`: about the connection.
        CONNECTION = 10, "@connection";
        /// `@transaction`: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
        TRANSACTION = 12, "@transaction";
        /// `@scripting`: EVAL, EVALSHA, SCRIPT.
        SCRIPTING = 13, "@scripting";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_has_a_bit_of_its_own() {
        fn distinct<T: Copy>(members: &[(T, &str)], bits: impl Fn(T) -> u32) {
            let all = members.iter().fold(0, |all, (m, _)| all | bits(*m));
            assert_eq!(all.count_ones() as usize, members.len());
        }
        distinct(CommandFlags::MEMBERS, |m| m.0);
        distinct(AclCategories::MEMBERS, |m| m.0);
    }

    #[test]
    fn names_print_in_declaration_order() {
        let flags = CommandFlags::FAST.with(CommandFlags::WRITE);
        assert_eq!(flags.names().collect::<Vec<_>>(), ["write", "fast"]);
        assert!(flags.contains(CommandFlags::WRITE));
        assert!(!flags.contains(CommandFlags::WRITE.with(CommandFlags::NO_AUTH)));
        assert!(flags.intersects(CommandFlags::FAST.with(CommandFlags::DENYOOM)));
        assert_eq!(CommandFlags::NONE.names().count(), 0);
        assert_eq!(format!("{flags:?}"), r#"{"write", "fast"}"#);
    }
}
