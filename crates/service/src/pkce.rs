//! Proof Key for Code Exchange (RFC 7636).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Plain,
    S256,
}

impl Method {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "plain" => Some(Self::Plain),
            "S256" => Some(Self::S256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::S256 => "S256",
        }
    }
}

/// RFC 7636 §4.1: 43 to 128 characters from `[A-Za-z0-9-._~]`. The same rule applies to a
/// challenge, since a `plain` challenge is the verifier itself and an S256 one is 43 characters.
pub fn is_well_formed(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6: S256 compares BASE64URL(SHA256(verifier)) with the challenge.
pub fn verify(method: Method, challenge: &str, verifier: &str) -> bool {
    let computed = match method {
        Method::Plain => verifier.to_string(),
        Method::S256 => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
    };
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes())
        .is_ok()
}

/// Checks the PKCE parameters of a sign-in or registration request: a method needs a
/// challenge, a challenge needs a known method, and the challenge must have RFC 7636's shape.
/// Returns Medplum's message for the failed rule.
pub fn check_parameters(
    challenge: Option<&str>,
    method: Option<&str>,
    require_s256: bool,
) -> Result<(), &'static str> {
    let challenge = challenge.filter(|text| !text.is_empty());
    let method = method.filter(|text| !text.is_empty());
    match (challenge, method) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err("Invalid code challenge"),
        (Some(_), None) => Err("Invalid code challenge method"),
        (Some(challenge), Some(method)) => {
            let method = Method::parse(method).ok_or("Invalid code challenge method")?;
            if method == Method::Plain && require_s256 {
                return Err("Invalid code challenge method");
            }
            if !is_well_formed(challenge) {
                return Err("Invalid code challenge");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_example() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(verify(
            Method::S256,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            verifier
        ));
        assert!(!verify(Method::S256, verifier, verifier));
    }

    #[test]
    fn verifier_length_limits() {
        assert!(!is_well_formed(&"a".repeat(42)));
        assert!(is_well_formed(&"a".repeat(43)));
        assert!(is_well_formed(&"a".repeat(128)));
        assert!(!is_well_formed(&"a".repeat(129)));
        assert!(!is_well_formed(&format!("{}+", "a".repeat(43))));
    }
}
