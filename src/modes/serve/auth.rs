//! Basic authentication for `--serve`: users and bcrypt hashes from the web config,
//! checked against each request's `Authorization` header.
//!
//! bcrypt is slow by design (tens of milliseconds at the usual cost), and it runs on the
//! HTTP thread, so a scraper every 15 s must not pay it each time: a (user, password)
//! pair that verified is remembered, as a SHA-256 digest of the pair, never the password
//! itself. A failure is never remembered, so every wrong guess costs the guesser a full
//! bcrypt verification, and an unknown user costs one too (against a stand-in hash),
//! so that the time taken does not tell which users exist.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest::{SHA256, digest};

/// The most verified pairs remembered; past it the memory is cleared, so that someone
/// who knows a password cannot grow it without bound with variants.
const REMEMBERED: usize = 64;

/// The users allowed in, and the pairs already verified.
#[derive(Debug)]
pub struct Auth {
    /// User name → bcrypt hash, as the web config gives them.
    users: BTreeMap<String, String>,
    /// What an unknown user's password is checked against, so that it costs what a
    /// known user's does: a hash at the highest cost among the users'.
    stand_in: String,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Auth {
    /// Users whose hashes were already checked to be bcrypt hashes.
    pub fn new(users: BTreeMap<String, String>) -> Auth {
        let cost = users
            .values()
            .filter_map(|hash| hash.parse::<bcrypt::HashParts>().ok())
            .map(|parts| parts.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        // The salt and password matter not: the answer for an unknown user is no.
        let stand_in = bcrypt::hash_with_salt("tcpscope", cost, [7; 16])
            .map(|parts| parts.to_string())
            .unwrap_or_default();
        Auth {
            users,
            stand_in,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the value of an `Authorization` header (or its absence) lets the request
    /// in.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let key = pair_digest(&user, &password);
        let mut verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.contains(&key) {
            return true;
        }
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.stand_in.as_str(), false),
        };
        let allowed = known && bcrypt::verify(&password, hash).unwrap_or(false);
        if !known {
            let _ = bcrypt::verify(&password, hash);
        }
        if allowed {
            if verified.len() >= REMEMBERED {
                verified.clear();
            }
            verified.insert(key);
        }
        allowed
    }
}

/// The user and password of a `Basic` authorization, or `None` when it is anything
/// else or malformed.
fn credentials(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The digest that stands for a verified pair; the user's length goes first so that
/// no two pairs share an input.
fn pair_digest(user: &str, password: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(8 + user.len() + password.len());
    input.extend_from_slice(&(user.len() as u64).to_le_bytes());
    input.extend_from_slice(user.as_bytes());
    input.extend_from_slice(password.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest(&SHA256, &input).as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn basic(user: &str, password: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))).into_bytes()
    }

    fn auth() -> Auth {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        Auth::new(BTreeMap::from([("prometheus".to_owned(), hash)]))
    }

    #[test]
    fn the_right_user_and_password_are_let_in_and_anything_else_is_not() {
        let auth = auth();
        assert!(auth.allows(Some(&basic("prometheus", "s3cret"))));
        assert!(!auth.allows(Some(&basic("prometheus", "wrong"))));
        assert!(!auth.allows(Some(&basic("someone", "s3cret"))));
        assert!(!auth.allows(None));
        assert!(!auth.allows(Some(b"Bearer abc")));
        assert!(!auth.allows(Some(b"Basic !!!not-base64")));
        // The scheme is case-insensitive, as RFC 7617 says.
        let lower = String::from_utf8(basic("prometheus", "s3cret"))
            .unwrap()
            .replace("Basic", "basic");
        assert!(auth.allows(Some(lower.as_bytes())));
    }

    #[test]
    fn a_verified_pair_is_answered_from_memory_but_a_wrong_password_costs_bcrypt_each_time() {
        let hash = bcrypt::hash("s3cret", 10).unwrap();
        let auth = Auth::new(BTreeMap::from([("prometheus".to_owned(), hash)]));
        let header = basic("prometheus", "s3cret");
        assert!(auth.allows(Some(&header)));
        let started = Instant::now();
        for _ in 0..100 {
            assert!(auth.allows(Some(&header)));
        }
        let remembered = started.elapsed();
        let started = Instant::now();
        assert!(!auth.allows(Some(&basic("prometheus", "guess"))));
        assert!(!auth.allows(Some(&basic("prometheus", "guess"))));
        let guesses = started.elapsed() / 2;
        // At cost 10 one verification takes tens of milliseconds; a hundred remembered
        // answers take less than one.
        assert!(remembered < guesses, "{remembered:?} vs {guesses:?}");
        assert!(guesses > Duration::from_millis(5), "{guesses:?}");
    }
}
