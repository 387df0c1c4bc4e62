//! Rendezvous (highest random weight) hashing: which node owns a key or session ID.
//!
//! Each node scores every key with a hash of the node's name (`host:port`) and the key; the
//! highest score wins. Adding or removing a node moves only the keys that node wins or won
//! (about 1/N of them), and every web server computes the same owner without talking to the
//! others. The hash is fixed here (FNV-1a, then MurmurHash3's 64-bit finalizer for avalanche)
//! rather than taken from a library whose output may change between versions or processes:
//! two web servers built at different times must agree on every owner.

/// The index of the node in `names` that owns `key`; `None` if there are no nodes.
pub(crate) fn owner<'a>(names: impl IntoIterator<Item = &'a str>, key: &[u8]) -> Option<usize> {
    names
        .into_iter()
        .enumerate()
        .max_by_key(|(_, name)| score(name.as_bytes(), key))
        .map(|(index, _)| index)
}

fn score(node: &[u8], key: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    // The separator keeps ("ab", "c") and ("a", "bc") apart.
    for &byte in node.iter().chain(&[0xff]).chain(key) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    fmix64(hash)
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: [&str; 3] = ["10.0.0.1:6380", "10.0.0.2:6380", "10.0.0.3:6380"];

    #[test]
    fn owners_are_stable_and_spread() {
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let key = format!("session-{i}");
            let owner = owner(NODES, key.as_bytes()).unwrap();
            assert_eq!(Some(owner), super::owner(NODES, key.as_bytes()));
            counts[owner] += 1;
        }
        // Each node gets roughly a third; 800 is far below any plausible deviation.
        assert!(counts.iter().all(|&n| n > 800), "{counts:?}");
        assert_ne!(score(b"ab", b"c"), score(b"a", b"bc"));
    }

    #[test]
    fn the_hash_never_changes() {
        // Web servers built from different versions must agree: a change here would silently
        // move (log out) every session of a cluster during a rolling deploy.
        assert_eq!(score(b"n", b"k"), 0xda51_6443_d64a_4310);
        let owners: Vec<usize> = ["k0", "k1", "k2", "k3", "k4", "k5"]
            .iter()
            .map(|key| owner(NODES, key.as_bytes()).unwrap())
            .collect();
        assert_eq!(owners, [2, 0, 2, 1, 2, 2]);
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let without_last = &NODES[..2];
        for i in 0..1000 {
            let key = format!("k{i}");
            let before = owner(NODES, key.as_bytes()).unwrap();
            let after = owner(without_last.iter().copied(), key.as_bytes()).unwrap();
            if before != 2 {
                assert_eq!(before, after, "{key} moved although its node stayed");
            }
        }
    }

    #[test]
    fn no_nodes_no_owner() {
        assert_eq!(owner([], b"k"), None);
    }
}
