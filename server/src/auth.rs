//! Authentication of the `default` user (`--requirepass`).
//!
//! The configured password is kept only as its SHA-256 digest, and a candidate is compared by
//! digest in constant time, so neither the comparison's duration nor the length of the password
//! leaks through timing. Nothing here logs or prints a password.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret string from the configuration, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Who may connect.
#[derive(Clone, Default)]
pub struct Auth {
    /// SHA-256 of the `default` user's password; `None`: no password, anyone may connect.
    default_digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("required", &self.required())
            .finish()
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl Auth {
    /// Authentication with `requirepass`, if any.
    pub fn new(requirepass: Option<&Secret>) -> Auth {
        Auth {
            default_digest: requirepass.map(|p| sha256(p.expose().as_bytes())),
        }
    }

    /// Whether clients must authenticate before other commands.
    pub fn required(&self) -> bool {
        self.default_digest.is_some()
    }

    /// Whether `password` is right for `user` (`None` or `default`: the requirepass user).
    pub fn check(&self, user: Option<&[u8]>, password: &[u8]) -> bool {
        let Some(expected) = &self.default_digest else {
            // Without a password the default user accepts any, like Redis's `nopass`.
            return user.is_none_or(|u| u == b"default");
        };
        if user.is_some_and(|u| u != b"default") {
            // Still hash, so that an unknown user costs the same as a wrong password.
            let _ = sha256(password);
            return false;
        }
        bool::from(sha256(password).ct_eq(expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_password_and_the_user() {
        let auth = Auth::new(Some(&Secret::new("s3cret".into())));
        assert!(auth.required());
        assert!(auth.check(None, b"s3cret"));
        assert!(auth.check(Some(b"default"), b"s3cret"));
        assert!(!auth.check(None, b"s3cre"));
        assert!(!auth.check(None, b""));
        assert!(!auth.check(Some(b"other"), b"s3cret"));
    }

    #[test]
    fn no_password_means_nopass_default_user() {
        let auth = Auth::new(None);
        assert!(!auth.required());
        assert!(auth.check(Some(b"default"), b"anything"));
        assert!(!auth.check(Some(b"other"), b"anything"));
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = Secret::new("hunter2".into());
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
