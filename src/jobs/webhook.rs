//! Webhooks, the Standard Webhooks way: each state change is a delivery stored with the job
//! (so a restart does not drop it), POSTed with `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))`, and retried
//! with backoff until the receiver answers 2xx or the tries run out.

use std::sync::Arc;
use std::time::Duration;

use base64::prelude::{Engine, BASE64_STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::model::now_ms;
use super::service::Service;

/// Tries per delivery; the waits double from 1 s, at most an hour apart (about 3.5 h in all).
pub const MAX_TRIES: i64 = 16;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed delivery stays with the node trying it: a try and then some.
const CLAIM_MS: i64 = 2 * REQUEST_TIMEOUT.as_millis() as i64;

/// The signing key: `whsec_` + base64 (the Standard Webhooks form), or any other text as bytes.
pub fn secret_bytes(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => BASE64_STANDARD
            .decode(b64)
            .map_err(|e| format!("webhook_secret: whsec_ followed by invalid base64: {e}")),
        None if secret.len() >= 16 => Ok(secret.as_bytes().to_vec()),
        None => Err("webhook_secret: at least 16 characters (or whsec_ + base64)".into()),
    }
}

/// The `webhook-signature` header for one message.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", BASE64_STANDARD.encode(mac.finalize().into_bytes()))
}

/// The wait before try `tries + 1`.
fn backoff_ms(tries: i64) -> i64 {
    1000 * (1i64 << tries.clamp(0, 12)).min(3600)
}

/// Sends due deliveries until the daemon stops.
pub async fn sender(service: Arc<Service>) {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client with default TLS settings builds");
    loop {
        match service.store.due_deliveries(32).await {
            Ok(due) => {
                for delivery in due {
                    // Nodes on one store share the deliveries: each is sent by the node that
                    // claims it (for longer than one try can take).
                    match service.store.claim_delivery(&delivery.id, CLAIM_MS).await {
                        Ok(true) => deliver(&service, &client, delivery).await,
                        Ok(false) => {}
                        Err(e) => tracing::warn!("webhooks: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("webhooks: {e}"),
        }
        tokio::select! {
            _ = service.webhook_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn deliver(service: &Service, client: &reqwest::Client, d: super::store::Delivery) {
    let Some(secret) = service.settings.webhook_secret.as_deref() else {
        return;
    };
    let timestamp = now_ms() / 1000;
    let answer = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("encore/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", &d.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            sign(secret, &d.id, timestamp, &d.payload),
        )
        .body(d.payload.clone())
        .send()
        .await;
    let (delivered, status, error) = match answer {
        Ok(r) if r.status().is_success() => (true, Some(r.status().as_u16() as i64), None),
        Ok(r) => (
            false,
            Some(r.status().as_u16() as i64),
            Some(format!("HTTP {}", r.status())),
        ),
        Err(e) => (false, None, Some(e.to_string())),
    };
    let tries = d.attempts + 1;
    let next_at = (!delivered && tries < MAX_TRIES).then(|| now_ms() + backoff_ms(d.attempts));
    if let Some(e) = &error {
        tracing::info!(job = %d.job_id, event = %d.event, "webhook to {} failed (try {tries}): {e}", d.url);
    }
    if let Err(e) = service
        .store
        .record_delivery(&d.id, delivered, status, error.as_deref(), next_at)
        .await
    {
        tracing::warn!("webhooks: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (and its reference libraries).
        let secret = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff_ms(0), 1000);
        assert_eq!(backoff_ms(3), 8000);
        assert_eq!(backoff_ms(15), 3_600_000);
    }
}
