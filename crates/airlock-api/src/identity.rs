//! Who is calling: the tenant and user, only ever from a verified token.
//!
//! On AWS, API Gateway's JWT authorizer verifies the token and hands the handler its claims
//! ([`caller_from_claims`]); `airlock dev` verifies the token itself ([`JwtVerifier`]).

use std::collections::BTreeMap;

use airlock_core::keys::TenantId;
use chrono::{DateTime, Utc};
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// The claim that names the tenant unless configured otherwise.
pub const DEFAULT_TENANT_CLAIM: &str = "tenant";

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    /// The token's subject (`sub`): recorded as the uploader.
    pub subject: String,
}

/// The caller named by claims a trusted party already verified. A token without the tenant
/// claim, or with one that is not a valid tenant name, is refused (403): it proved who the
/// user is but not where their uploads belong.
pub fn caller_from_claims(
    claim: impl Fn(&str) -> Option<String>,
    tenant_claim: &str,
) -> Result<Caller, Problem> {
    let subject = claim("sub")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Problem::forbidden("the token has no subject (sub) claim"))?;
    let tenant = claim(tenant_claim)
        .ok_or_else(|| Problem::forbidden(format!("the token has no {tenant_claim:?} claim")))?;
    let tenant = TenantId::new(tenant).map_err(|e| Problem::forbidden(e.to_string()))?;
    Ok(Caller { tenant, subject })
}

/// Verifies bearer tokens: signature, expiry (`exp` required), `nbf`, and the issuer and
/// audience when configured.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    tenant_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("tenant_claim", &self.tenant_claim)
            .finish_non_exhaustive()
    }
}

/// A key that cannot be used to sign or verify tokens.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid token key")]
    Jwt(#[source] jsonwebtoken::errors::Error),
    #[error("an HS256 secret must be at least {MIN_SECRET_BYTES} bytes (it has {0})")]
    ShortSecret(usize),
}

/// RFC 7518 asks for an HMAC key at least as long as the hash output.
pub const MIN_SECRET_BYTES: usize = 32;

fn check_secret(secret: &[u8]) -> Result<(), KeyError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyError::ShortSecret(secret.len()));
    }
    Ok(())
}

impl JwtVerifier {
    /// Tokens signed with HS256 and this shared secret (at least 32 bytes).
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        check_secret(secret)?;
        let key = DecodingKey::from_secret(secret).map_err(KeyError::Jwt)?;
        Ok(Self::with_key(key, Algorithm::HS256))
    }

    /// Tokens signed by the holder of the private half of this PEM public key (`RS256` or
    /// `ES256`).
    pub fn from_public_pem(algorithm: Algorithm, pem: &[u8]) -> Result<Self, KeyError> {
        let key = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
            _ => DecodingKey::from_rsa_pem(pem),
        }
        .map_err(KeyError::Jwt)?;
        Ok(Self::with_key(key, algorithm))
    }

    fn with_key(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Self {
            key,
            validation,
            tenant_claim: DEFAULT_TENANT_CLAIM.to_owned(),
        }
    }

    /// Accept only tokens from this issuer (`iss`).
    #[must_use]
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self
    }

    /// Accept only tokens for this audience (`aud`).
    #[must_use]
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self
    }

    /// The claim that names the tenant.
    #[must_use]
    pub fn tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.tenant_claim = claim.into();
        self
    }

    /// The caller of a request with this `Authorization` header value.
    pub fn verify(&self, authorization: Option<&str>) -> Result<Caller, Problem> {
        let header = authorization.ok_or_else(|| {
            Problem::unauthorized("no Authorization header: send `Authorization: Bearer <token>`")
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header is not `Bearer <token>`")
            })?;
        let data = jsonwebtoken::decode::<BTreeMap<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
                ErrorKind::InvalidSignature => "the token's signature does not verify".to_owned(),
                ErrorKind::InvalidAlgorithm => {
                    "the token is signed with another algorithm".to_owned()
                }
                ErrorKind::InvalidIssuer => "the token is from another issuer".to_owned(),
                ErrorKind::InvalidAudience => "the token is for another audience".to_owned(),
                ErrorKind::MissingRequiredClaim(claim) => {
                    format!("the token has no {claim:?} claim")
                }
                _ => format!("the token is invalid: {e}"),
            };
            Problem::unauthorized(why)
        })?;
        let claims = data.claims;
        caller_from_claims(
            |name| match claims.get(name)? {
                serde_json::Value::String(s) => Some(s.clone()),
                _ => None,
            },
            &self.tenant_claim,
        )
    }
}

#[derive(Serialize, Deserialize)]
struct DevClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    tenant: &'a str,
    iat: i64,
    exp: i64,
}

/// The issuer of tokens minted by [`mint_hs256`].
pub const DEV_ISSUER: &str = "airlock-dev";

/// A development token: HS256 with `secret`, for `tenant` and user `subject`, valid for
/// `validity` from `now` (issuer [`DEV_ISSUER`], tenant in the `tenant` claim).
pub fn mint_hs256(
    secret: &[u8],
    tenant: &TenantId,
    subject: &str,
    now: DateTime<Utc>,
    validity: chrono::Duration,
) -> Result<String, KeyError> {
    let claims = DevClaims {
        iss: DEV_ISSUER,
        sub: subject,
        tenant: tenant.as_str(),
        iat: now.timestamp(),
        exp: (now + validity).timestamp(),
    };
    check_secret(secret)?;
    let key = EncodingKey::from_secret(secret).map_err(KeyError::Jwt)?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).map_err(KeyError::Jwt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    const SECRET: &[u8] = b"a development secret of enough length";

    fn token(secret: &[u8], tenant: &str, validity: chrono::Duration) -> String {
        mint_hs256(
            secret,
            &TenantId::new(tenant).unwrap(),
            "alice",
            Utc::now(),
            validity,
        )
        .unwrap()
    }

    #[test]
    fn a_minted_token_names_its_tenant_and_subject() {
        let verifier = JwtVerifier::hs256(SECRET).unwrap().issuer(DEV_ISSUER);
        let bearer = format!(
            "Bearer {}",
            token(SECRET, "acme", chrono::Duration::minutes(5))
        );
        let caller = verifier.verify(Some(&bearer)).unwrap();
        assert_eq!(caller.tenant.as_str(), "acme");
        assert_eq!(caller.subject, "alice");
    }

    #[test]
    fn bad_tokens_are_401_with_the_reason() {
        let verifier = JwtVerifier::hs256(SECRET).unwrap();
        let cases = [
            (None, "no Authorization header"),
            (Some("Basic abc".to_owned()), "not `Bearer <token>`"),
            (Some("Bearer not.a.jwt".to_owned()), "invalid"),
            (
                Some(format!(
                    "Bearer {}",
                    token(
                        b"another secret entirely, also 32+ bytes long",
                        "acme",
                        chrono::Duration::minutes(5)
                    )
                )),
                "signature does not verify",
            ),
            (
                Some(format!(
                    "Bearer {}",
                    token(SECRET, "acme", chrono::Duration::minutes(-10))
                )),
                "expired",
            ),
        ];
        for (header, why) in cases {
            let problem = verifier.verify(header.as_deref()).unwrap_err();
            assert_eq!(problem.status, StatusCode::UNAUTHORIZED, "{header:?}");
            assert!(
                problem.detail.contains(why),
                "{header:?}: {}",
                problem.detail
            );
        }
    }

    #[test]
    fn a_tampered_payload_does_not_verify() {
        let verifier = JwtVerifier::hs256(SECRET).unwrap();
        let good = token(SECRET, "acme", chrono::Duration::minutes(5));
        let evil = token(
            b"another secret entirely, also 32+ bytes long",
            "globex",
            chrono::Duration::minutes(5),
        );
        let parts: Vec<&str> = good.split('.').collect();
        let evil_parts: Vec<&str> = evil.split('.').collect();
        let spliced = format!("Bearer {}.{}.{}", parts[0], evil_parts[1], parts[2]);
        let problem = verifier.verify(Some(&spliced)).unwrap_err();
        assert_eq!(problem.status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn claims_without_a_valid_tenant_are_403() {
        let claims = |tenant: Option<&'static str>| {
            move |name: &str| match name {
                "sub" => Some("alice".to_owned()),
                "tenant" => tenant.map(str::to_owned),
                _ => None,
            }
        };
        assert_eq!(
            caller_from_claims(claims(None), "tenant")
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            caller_from_claims(claims(Some("../etc")), "tenant")
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            caller_from_claims(claims(Some("acme")), "tenant")
                .unwrap()
                .tenant
                .as_str(),
            "acme"
        );
    }
}
