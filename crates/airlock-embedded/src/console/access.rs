//! Who may use the console: sign-in tokens with a name and a role, and the sessions a
//! sign-in opens.
//!
//! Tokens are configured as lines `ROLE NAME TOKEN` (`#` starts a comment), where TOKEN is
//! the token itself or `sha256:` and the hex SHA-256 of it, so a tokens file need not hold
//! the secrets. Only the SHA-256 of each token is kept in memory, and a presented token is
//! hashed and compared with every configured hash in full, in time that does not depend on
//! where they differ or which one matches.
//!
//! A session is a random id in an `HttpOnly; SameSite=Strict` cookie, mapped on the server
//! to the signed-in name, role, the session's own anti-CSRF token and its expiry.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

/// Shortest token accepted in a tokens list (a token is a password no one types twice).
pub const MIN_TOKEN_LEN: usize = 16;

/// What a signed-in reviewer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Views, releases (unforced), rescans and exports.
    Reviewer,
    /// Also purges, and forces releases.
    Admin,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reviewer => "reviewer",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reviewer" => Ok(Self::Reviewer),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown role {other:?} (reviewer or admin)")),
        }
    }
}

/// One configured token: who signs in with it, as what.
#[derive(Clone)]
struct Token {
    role: Role,
    name: String,
    sha256: [u8; 32],
}

/// The tokens the console accepts.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tokens.iter().map(|t| (t.role, &t.name)))
            .finish()
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Equal, in time that does not depend on where they differ.
#[must_use]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes from the OS, as hex.
pub fn random_secret() -> anyhow::Result<String> {
    let mut buffer = [0u8; 32];
    getrandom::fill(&mut buffer).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(buffer))
}

impl Tokens {
    /// Parses token lines; `source` names where they came from in errors. Entries are
    /// separated by newlines (or `;`, for one environment variable).
    pub fn parse(text: &str, source: &str) -> anyhow::Result<Self> {
        let mut tokens = Self::default();
        for (number, line) in text.split(['\n', ';']).enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("{source}, entry {}", number + 1);
            let words: Vec<&str> = line.split_whitespace().collect();
            let [role, name, secret] = words[..] else {
                bail!(
                    "{}: expected `ROLE NAME TOKEN` (three words), found {} words",
                    at(),
                    words.len()
                );
            };
            let role: Role = role
                .parse()
                .map_err(|e: String| anyhow::anyhow!("{}: {e}", at()))?;
            let sha256 = match secret.strip_prefix("sha256:") {
                Some(hash) => hex::decode(hash)
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .with_context(|| {
                        format!("{}: sha256: must be followed by 64 hex digits", at())
                    })?,
                None if secret.chars().count() < MIN_TOKEN_LEN => bail!(
                    "{}: the token of {name} is shorter than {MIN_TOKEN_LEN} characters",
                    at()
                ),
                None => self::sha256(secret),
            };
            if tokens.tokens.iter().any(|t| t.name == name) {
                bail!("{}: {name} is named twice", at());
            }
            if tokens.tokens.iter().any(|t| t.sha256 == sha256) {
                bail!("{}: the token of {name} is also another's", at());
            }
            tokens.tokens.push(Token {
                role,
                name: name.to_owned(),
                sha256,
            });
        }
        Ok(tokens)
    }

    /// The tokens of `file` and of `text` (an environment variable's value), together.
    pub fn load(file: Option<&Path>, text: Option<&str>) -> anyhow::Result<Self> {
        let mut all = String::new();
        let mut sources = Vec::new();
        if let Some(file) = file {
            let content = std::fs::read_to_string(file)
                .with_context(|| format!("reading the tokens file {}", file.display()))?;
            Self::parse(&content, &file.display().to_string())?;
            all.push_str(&content);
            all.push('\n');
            sources.push(file.display().to_string());
        }
        if let Some(text) = text {
            Self::parse(text, "AIRLOCK_CONSOLE_TOKENS")?;
            all.push_str(text);
            sources.push("AIRLOCK_CONSOLE_TOKENS".to_owned());
        }
        Self::parse(&all, &sources.join(" and "))
    }

    /// One admin token, generated: the tokens and the token itself (to be shown once).
    pub fn generated_admin(name: &str) -> anyhow::Result<(Self, String)> {
        let secret = random_secret()?;
        let tokens = Self {
            tokens: vec![Token {
                role: Role::Admin,
                name: name.to_owned(),
                sha256: sha256(&secret),
            }],
        };
        Ok((tokens, secret))
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The name and role a presented token signs in as. Every configured token is compared
    /// in full, whichever matches.
    #[must_use]
    pub fn check(&self, presented: &str) -> Option<(String, Role)> {
        let presented = sha256(presented.trim());
        let mut found = None;
        for token in &self.tokens {
            if same_bytes(&token.sha256, &presented) {
                found = Some((token.name.clone(), token.role));
            }
        }
        found
    }
}

/// A signed-in reviewer.
#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    pub role: Role,
    /// The anti-CSRF token of this session's forms.
    pub csrf: String,
    pub expires: Instant,
}

/// The open sessions, by id.
#[derive(Debug)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
    pub lifetime: Duration,
}

impl Sessions {
    #[must_use]
    pub fn new(lifetime: Duration) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    /// Opens a session for `name` as `role`: its id (for the cookie).
    pub fn open(&self, name: String, role: Role) -> anyhow::Result<String> {
        let id = random_secret()?;
        let session = Session {
            name,
            role,
            csrf: random_secret()?,
            expires: Instant::now() + self.lifetime,
        };
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        open.retain(|_, s| s.expires > now);
        open.insert(id.clone(), session);
        Ok(id)
    }

    /// The session of `id`, if it is open and not expired.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match open.get(id) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                open.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `id`.
    pub fn close(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }
}

/// The value of cookie `name` in a `Cookie` header.
#[must_use]
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lines_parse_and_mistakes_are_named() {
        let hashed = hex::encode(sha256("reviewer-token-0002"));
        let tokens = Tokens::parse(
            &format!("# the team\nadmin alice admin-token-00001\n\nreviewer bob sha256:{hashed}\n"),
            "tokens.txt",
        )
        .unwrap();
        assert_eq!(
            tokens.check("admin-token-00001"),
            Some(("alice".to_owned(), Role::Admin))
        );
        assert_eq!(
            tokens.check("reviewer-token-0002"),
            Some(("bob".to_owned(), Role::Reviewer))
        );
        assert_eq!(tokens.check("admin-token-00002"), None);
        assert_eq!(tokens.check(""), None);
        // `;` separates entries too (one environment variable).
        let both = Tokens::parse(
            "admin a aaaaaaaaaaaaaaaa; reviewer b bbbbbbbbbbbbbbbb",
            "env",
        )
        .unwrap();
        assert_eq!(both.tokens.len(), 2);
        for (text, problem) in [
            ("owner x xxxxxxxxxxxxxxxx", "unknown role"),
            ("admin x", "three words"),
            ("admin x short", "shorter than 16"),
            ("admin x sha256:abcd", "64 hex digits"),
            (
                "admin x xxxxxxxxxxxxxxxx\nreviewer x yyyyyyyyyyyyyyyy",
                "named twice",
            ),
            (
                "admin x xxxxxxxxxxxxxxxx\nreviewer y xxxxxxxxxxxxxxxx",
                "also another's",
            ),
        ] {
            let err = Tokens::parse(text, "tokens.txt").unwrap_err().to_string();
            assert!(err.contains(problem), "{text:?}: {err}");
            assert!(err.contains("tokens.txt, entry"), "{err}");
        }
    }

    #[test]
    fn a_generated_admin_token_signs_in_and_sessions_expire() {
        let (tokens, secret) = Tokens::generated_admin("admin").unwrap();
        assert_eq!(secret.len(), 64);
        assert_eq!(tokens.check(&secret), Some(("admin".into(), Role::Admin)));
        let sessions = Sessions::new(Duration::from_hours(1));
        let id = sessions.open("alice".into(), Role::Admin).unwrap();
        let session = sessions.get(&id).unwrap();
        assert_eq!(session.name, "alice");
        assert_ne!(session.csrf, id);
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
        let expired = Sessions::new(Duration::ZERO);
        let id = expired.open("bob".into(), Role::Reviewer).unwrap();
        assert!(expired.get(&id).is_none());
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let header = "a=1; airlock-console-8740=abc; airlock-console-87400=def";
        assert_eq!(cookie(header, "airlock-console-8740"), Some("abc"));
        assert_eq!(cookie(header, "airlock-console-874"), None);
    }
}
