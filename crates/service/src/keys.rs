//! Signing keys and JWTs.
//!
//! Keys are RS256 (RSA-2048, RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3) and live in the
//! database as `JsonWebKey` resources, so every server process signs and verifies with the same
//! set. Each process keeps the parsed keys in memory: parsing an RSA key for every signature
//! would cost more than the signature itself.

use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use medgate_fhir::resources::JsonWebKey;
use serde_json::{Value, json};

use crate::error::{ServiceError, ServiceResult};

pub const ALGORITHM: &str = "RS256";

struct LoadedKey {
    kid: String,
    key_pair: KeyPair,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl LoadedKey {
    fn from_resource(resource: &JsonWebKey) -> ServiceResult<Self> {
        let pkcs8 = resource.private_key_pkcs8.as_deref().ok_or_else(|| {
            ServiceError::Internal(format!("signing key {} has no private key", resource.id))
        })?;
        let der = STANDARD.decode(pkcs8).map_err(|error| {
            ServiceError::Internal(format!(
                "signing key {} is not base64: {error}",
                resource.id
            ))
        })?;
        let key_pair = KeyPair::from_pkcs8(&der).map_err(|error| {
            ServiceError::Internal(format!("signing key {} is invalid: {error}", resource.id))
        })?;
        let components = PublicKeyComponents::<Vec<u8>>::from(key_pair.public_key());
        Ok(Self {
            kid: resource.id.clone(),
            key_pair,
            modulus: components.n,
            exponent: components.e,
        })
    }

    fn public_jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": ALGORITHM,
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.modulus),
            "e": URL_SAFE_NO_PAD.encode(&self.exponent),
        })
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let public = RsaPublicKeyComponents {
            n: &self.modulus,
            e: &self.exponent,
        };
        public
            .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
            .is_ok()
    }
}

/// Generates a new RSA-2048 key as a `JsonWebKey` resource (without id and meta).
pub fn generate_key() -> ServiceResult<JsonWebKey> {
    let key_pair = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| ServiceError::Internal("RSA key generation failed".to_string()))?;
    let der = key_pair
        .as_der()
        .map_err(|_| ServiceError::Internal("RSA key export failed".to_string()))?;
    Ok(JsonWebKey {
        active: true,
        alg: ALGORITHM.to_string(),
        private_key_pkcs8: Some(STANDARD.encode(der.as_ref())),
        ..Default::default()
    })
}

/// The active signing keys; the first one signs, all of them verify.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: Arc<RwLock<Vec<Arc<LoadedKey>>>>,
}

/// The reason a JWT was not accepted. The text never reaches clients, because handlers return
/// the generic message of their endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm")]
    Algorithm,
    #[error("unknown key id")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
}

impl KeyRing {
    /// Replaces the loaded keys, oldest first, so the newest key ends up signing.
    pub fn replace(&self, resources: &[JsonWebKey]) -> ServiceResult<()> {
        let mut loaded = Vec::new();
        for resource in resources
            .iter()
            .filter(|resource| resource.active && resource.alg == ALGORITHM)
        {
            loaded.push(Arc::new(LoadedKey::from_resource(resource)?));
        }
        loaded.reverse();
        *self.keys.write().expect("key ring lock poisoned") = loaded;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.read().expect("key ring lock poisoned").is_empty()
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys
            .read()
            .expect("key ring lock poisoned")
            .iter()
            .any(|key| key.kid == kid)
    }

    /// Returns the JWK Set of RFC 7517 §5 with every active public key.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .read()
            .expect("key ring lock poisoned")
            .iter()
            .map(|key| key.public_jwk())
            .collect();
        json!({ "keys": keys })
    }

    /// Signs `claims` as a compact JWS with the given `typ` header.
    pub fn sign(&self, typ: &str, claims: &Value) -> ServiceResult<String> {
        let key = self
            .keys
            .read()
            .expect("key ring lock poisoned")
            .first()
            .cloned()
            .ok_or_else(|| ServiceError::Internal("no active signing key".to_string()))?;
        let header = json!({ "alg": ALGORITHM, "kid": key.kid, "typ": typ });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; key.key_pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        key.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| ServiceError::Internal("RSA signing failed".to_string()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// Checks the signature of a compact JWS and returns its header and claims. Only RS256
    /// with a known `kid` is accepted, which rules out `alg: none` and HMAC confusion.
    /// Claim checks (issuer, expiry, type) are the caller's.
    pub fn verify(&self, token: &str) -> Result<(Value, Value), JwtError> {
        let mut parts = token.split('.');
        let (Some(header_part), Some(claims_part), Some(signature_part), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header = decode_json(header_part)?;
        if header.get("alg").and_then(Value::as_str) != Some(ALGORITHM) {
            return Err(JwtError::Algorithm);
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(JwtError::UnknownKey)?;
        let key = self
            .keys
            .read()
            .expect("key ring lock poisoned")
            .iter()
            .find(|key| key.kid == kid)
            .cloned()
            .ok_or(JwtError::UnknownKey)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_part)
            .map_err(|_| JwtError::Malformed)?;
        let signing_input = &token[..header_part.len() + 1 + claims_part.len()];
        if !key.verify(signing_input.as_bytes(), &signature) {
            return Err(JwtError::Signature);
        }
        Ok((header, decode_json(claims_part)?))
    }
}

fn decode_json(part: &str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(JwtError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        let mut key = generate_key().unwrap();
        key.id = "k1".to_string();
        let ring = KeyRing::default();
        ring.replace(&[key]).unwrap();
        ring
    }

    #[test]
    fn sign_then_verify() {
        let ring = ring();
        let token = ring.sign("JWT", &json!({"sub": "u1"})).unwrap();
        let (header, claims) = ring.verify(&token).unwrap();
        assert_eq!(header["kid"], "k1");
        assert_eq!(claims["sub"], "u1");
        assert_eq!(ring.jwks()["keys"][0]["kid"], "k1");
    }

    #[test]
    fn tampered_claims_fail() {
        let ring = ring();
        let token = ring.sign("JWT", &json!({"sub": "u1"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(json!({"sub": "admin"}).to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(ring.verify(&tampered), Err(JwtError::Signature));
    }

    #[test]
    fn alg_none_and_hmac_fail() {
        let ring = ring();
        let claims = URL_SAFE_NO_PAD.encode(json!({"sub": "u1"}).to_string());
        for alg in ["none", "HS256"] {
            let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": "k1"}).to_string());
            assert_eq!(
                ring.verify(&format!("{header}.{claims}.")),
                Err(JwtError::Algorithm)
            );
        }
    }

    #[test]
    fn malformed_tokens_fail() {
        let ring = ring();
        for token in ["", "abc", "a.b", "a.b.c.d", "!!.??.##"] {
            assert!(ring.verify(token).is_err(), "{token}");
        }
    }
}
