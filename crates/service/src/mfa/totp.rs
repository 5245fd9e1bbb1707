//! Time-based one-time passwords (RFC 6238 over the HOTP of RFC 4226) with the settings
//! authenticator apps and Medplum's otplib use: HMAC-SHA1, 30-second steps, 6 digits, and
//! an 80-bit secret written in unpadded base32 (RFC 4648 §6).

use aws_lc_rs::hmac;
use chrono::{DateTime, Utc};

use crate::random::Random;

/// Length of one time step in seconds (RFC 6238 §4.1 `X`, the recommended default).
pub const STEP_SECONDS: i64 = 30;

/// Secret size in bytes: otplib's default, so secrets copied from Medplum keep working.
const SECRET_BYTES: usize = 10;

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Generates a new secret as unpadded base32 text.
pub fn generate_secret(random: &dyn Random) -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    random.fill(&mut bytes);
    base32_encode(&bytes)
}

/// The time step that contains `at` (RFC 6238 §4.2, with `T0` = 0).
pub fn step_at(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(STEP_SECONDS)
}

/// Computes the 6-digit code of one time step, or `None` for a secret that is not base32.
pub fn code_for_step(secret: &str, step: i64) -> Option<String> {
    let key = base32_decode(secret)?;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let digest = tag.as_ref();

    // Dynamic truncation, RFC 4226 §5.3.
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    Some(format!("{:06}", binary % 1_000_000))
}

/// Finds the time step whose code equals `code`, searching `window` steps on each side of
/// the current one to allow for clock drift (RFC 6238 §5.2). The caller must still refuse a
/// step that was already used, because a code must be accepted at most once.
pub fn matching_step(secret: &str, code: &str, now: DateTime<Utc>, window: u32) -> Option<i64> {
    if code.len() != 6 || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    let window = i64::from(window);
    (current - window..=current + window).find(|step| {
        code_for_step(secret, *step).is_some_and(|expected| {
            aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), code.as_bytes())
                .is_ok()
        })
    })
}

/// Builds the `otpauth://` URI that authenticator apps read from a QR code (the Key Uri
/// Format of Google Authenticator), in Medplum's form:
/// `otpauth://totp/<issuer>:<label>?secret=…&issuer=<issuer>`.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &str) -> String {
    // A colon separates issuer and account in the label, so neither part may contain one.
    let issuer = issuer.replace(':', "");
    let label = format!("{issuer}:{}", account.replace(':', ""));
    let mut uri = url::Url::parse("otpauth://totp/").expect("static URL is valid");
    uri.set_path(&label);
    uri.query_pairs_mut()
        .append_pair("secret", secret)
        .append_pair("issuer", &issuer);
    uri.to_string()
}

fn base32_encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            text.push(char::from(
                BASE32_ALPHABET[((buffer >> bits) & 31) as usize],
            ));
        }
    }
    if bits > 0 {
        text.push(char::from(
            BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize],
        ));
    }
    text
}

/// Decodes base32 text, ignoring case, spaces and `=` padding as authenticator apps do.
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for character in text.bytes().filter(|byte| *byte != b' ' && *byte != b'=') {
        let value = BASE32_ALPHABET
            .iter()
            .position(|letter| *letter == character.to_ascii_uppercase())?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
        }
    }
    (!bytes.is_empty()).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The SHA-1 seed of RFC 6238 Appendix B, "12345678901234567890", in base32.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc6238_test_vectors() {
        // Appendix B lists 8-digit codes; the last 6 digits are the 6-digit codes.
        let cases = [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ];
        for (seconds, expected) in cases {
            let at = Utc.timestamp_opt(seconds, 0).unwrap();
            assert_eq!(
                code_for_step(RFC_SECRET, step_at(at)).as_deref(),
                Some(expected),
                "{seconds}"
            );
        }
    }

    #[test]
    fn window_accepts_neighbouring_steps_only() {
        let now = Utc.timestamp_opt(1_111_111_111, 0).unwrap();
        let step = step_at(now);
        for offset in [-1, 0, 1] {
            let code = code_for_step(RFC_SECRET, step + offset).unwrap();
            assert_eq!(
                matching_step(RFC_SECRET, &code, now, 1),
                Some(step + offset)
            );
        }
        let far = code_for_step(RFC_SECRET, step + 2).unwrap();
        assert_eq!(matching_step(RFC_SECRET, &far, now, 1), None);
        assert_eq!(matching_step(RFC_SECRET, &far, now, 2), Some(step + 2));
        assert_eq!(matching_step(RFC_SECRET, "12345", now, 1), None);
        assert_eq!(matching_step(RFC_SECRET, "abcdef", now, 1), None);
    }

    #[test]
    fn base32_round_trip() {
        assert_eq!(base32_encode(b"12345678901234567890"), RFC_SECRET);
        assert_eq!(
            base32_decode("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap(),
            b"12345678901234567890"
        );
        assert_eq!(base32_decode("not base32!"), None);
        let secret = generate_secret(&crate::random::SeededRandom::new(7));
        assert_eq!(secret.len(), 16);
        assert_eq!(base32_decode(&secret).unwrap().len(), 10);
    }

    #[test]
    fn uri_has_medplum_shape() {
        assert_eq!(
            otpauth_uri("medplum.com", "Medplum - a@b.co", "ABC"),
            "otpauth://totp/medplum.com:Medplum%20-%20a@b.co?secret=ABC&issuer=medplum.com"
        );
    }
}
