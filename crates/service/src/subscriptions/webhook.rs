//! Delivery of one rest-hook notification: `POST` of the resource to `channel.endpoint`.

use aws_lc_rs::hmac;
use serde_json::Value;

use super::criteria::{SECRET_EXTENSION, extension};
use crate::delivery::DeliveryError;

/// Hex HMAC-SHA256 of `body` under `secret`: the `X-Signature` header Medplum sends, which a
/// receiver recomputes over the raw request body to check the sender.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Posts `body` to the subscription's endpoint with the headers of `channel.header`
/// (`Name: value` strings, as FHIR R4 defines them) and, when the subscription carries a
/// secret, `X-Signature`. Any 2xx status is success (FHIR R4 subscription.html#rest-hook).
pub async fn post(
    http: &reqwest::Client,
    subscription: &Value,
    body: Vec<u8>,
) -> Result<(), DeliveryError> {
    let Some(endpoint) = subscription["channel"]["endpoint"].as_str() else {
        return Err(DeliveryError::Permanent(
            "the subscription has no channel.endpoint".to_string(),
        ));
    };
    let endpoint = reqwest::Url::parse(endpoint)
        .map_err(|error| DeliveryError::Permanent(format!("invalid channel.endpoint: {error}")))?;
    // TODO: endpoints on loopback or private addresses are allowed, as in Medplum. This is
    // acceptable while only members whose access policy lets them write Subscription can
    // create one, and the request carries no server credentials. The OWASP Server-Side
    // Request Forgery Prevention Cheat Sheet lists the checks an address filter would need.
    if !matches!(endpoint.scheme(), "http" | "https") {
        return Err(DeliveryError::Permanent(
            "channel.endpoint must be an http or https URL".to_string(),
        ));
    }

    let mut request = http
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/fhir+json");
    for header in subscription["channel"]["header"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Some((name, value)) = header.split_once(':') {
            request = request.header(name.trim(), value.trim());
        }
    }
    if let Some(secret) =
        extension(subscription, SECRET_EXTENSION, "valueString").and_then(Value::as_str)
    {
        request = request.header("X-Signature", signature(secret, &body));
    }

    let response =
        request.body(body).send().await.map_err(|error| {
            DeliveryError::Transient(format!("webhook request failed: {error}"))
        })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Transient(format!(
            "webhook endpoint returned status {}",
            response.status()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
