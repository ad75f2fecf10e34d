//! Certificates the webhook manages itself: one Secret shared by every replica, and the `caBundle` of the
//! ValidatingWebhookConfiguration kept equal to the Secret's CA.
//!
//! Replicas race only through the API's optimistic concurrency: a create that meets 409 (another replica created
//! the Secret first) or an update that meets 409 (another replica rotated it) re-reads and uses what is there,
//! so all replicas end up serving the same certificate.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;

use super::WebhookError;
use super::certs::{self, CertBundle, RENEW_BEFORE};

pub const KEY_CA: &str = "ca.crt";
pub const KEY_CERT: &str = "tls.crt";
pub const KEY_KEY: &str = "tls.key";
/// Rounds of read-then-write before giving up; each lost round means another replica wrote in between.
const ATTEMPTS: usize = 5;

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

/// The bundle stored in `secret`, or why there is none.
pub fn bundle_of(secret: &Secret) -> Result<CertBundle, String> {
    let data = secret.data.as_ref();
    let text = |key: &str| -> Result<String, String> {
        let bytes = data.and_then(|d| d.get(key)).ok_or_else(|| format!("no data key {key}"))?;
        String::from_utf8(bytes.0.clone()).map_err(|_| format!("data key {key} is not PEM text"))
    };
    Ok(CertBundle { ca_pem: text(KEY_CA)?, cert_pem: text(KEY_CERT)?, key_pem: text(KEY_KEY)? })
}

fn data_of(bundle: &CertBundle) -> BTreeMap<String, ByteString> {
    [(KEY_CA, &bundle.ca_pem), (KEY_CERT, &bundle.cert_pem), (KEY_KEY, &bundle.key_pem)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

fn new_secret(namespace: &str, name: &str, bundle: &CertBundle) -> Secret {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "openelb-controller".to_string()),
        ("app.kubernetes.io/component".to_string(), "webhook".to_string()),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(data_of(bundle)),
        ..Secret::default()
    }
}

/// A bundle for `hosts` from Secret `namespace/name`: the stored one when it is valid for at least
/// [`RENEW_BEFORE`], else a new one written there (created, or replaced keeping the Secret's type and labels).
pub async fn ensure_secret(
    api: &Api<Secret>,
    namespace: &str,
    name: &str,
    hosts: &[String],
) -> Result<CertBundle, WebhookError> {
    let api_err = |what: &str| {
        let what = format!("{what} Secret {namespace}/{name}");
        move |source| WebhookError::Api { what, source }
    };
    for _ in 0..ATTEMPTS {
        let current = api.get_opt(name).await.map_err(api_err("reading"))?;
        let now = SystemTime::now();
        let stored = current.as_ref().map(bundle_of);
        match &stored {
            Some(Ok(b)) => match certs::check(b, hosts, now, RENEW_BEFORE) {
                Ok(()) => return Ok(b.clone()),
                Err(why) => tracing::info!("Secret {namespace}/{name}: replacing its certificate: {why}"),
            },
            Some(Err(why)) => tracing::info!("Secret {namespace}/{name}: replacing it: {why}"),
            None => tracing::info!("Secret {namespace}/{name} does not exist: creating a CA and serving certificate"),
        }
        let previous = stored.and_then(Result::ok);
        let fresh = certs::with_previous_ca(certs::generate(hosts, now)?, previous.as_ref(), now);
        let written = match current {
            None => api
                .create(&PostParams::default(), &new_secret(namespace, name, &fresh))
                .await
                .map_err(|e| ("creating", e)),
            Some(mut secret) => {
                secret.data = Some(data_of(&fresh));
                secret.string_data = None;
                api.replace(name, &PostParams::default(), &secret).await.map_err(|e| ("updating", e))
            }
        };
        match written {
            Ok(_) => {
                tracing::info!("Secret {namespace}/{name}: new webhook certificate for {}", hosts.join(", "));
                return Ok(fresh);
            }
            Err((_, e)) if is_conflict(&e) => {
                tracing::debug!("Secret {namespace}/{name} was written by another replica; reading it again");
            }
            Err((what, e)) => return Err(api_err(what)(e)),
        }
    }
    Err(WebhookError::Contended { what: format!("Secret {namespace}/{name}"), attempts: ATTEMPTS })
}

/// What [`ensure_ca_bundle`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaBundle {
    /// Every webhook of the configuration already trusted the CA.
    Unchanged,
    /// This many webhooks were given the CA.
    Patched(usize),
    /// No configuration of that name: nothing calls the webhook yet.
    NoConfiguration,
}

/// Sets `caBundle` of every webhook in configuration `name` to `ca_pem` where it differs.
pub async fn ensure_ca_bundle(
    api: &Api<ValidatingWebhookConfiguration>,
    name: &str,
    ca_pem: &str,
) -> Result<CaBundle, WebhookError> {
    let api_err = |what: &str| {
        let what = format!("{what} ValidatingWebhookConfiguration {name}");
        move |source| WebhookError::Api { what, source }
    };
    let want = ByteString(ca_pem.as_bytes().to_vec());
    for _ in 0..ATTEMPTS {
        let Some(mut config) = api.get_opt(name).await.map_err(api_err("reading"))? else {
            return Ok(CaBundle::NoConfiguration);
        };
        let mut changed = 0;
        for webhook in config.webhooks.iter_mut().flatten() {
            if webhook.client_config.ca_bundle.as_ref() != Some(&want) {
                webhook.client_config.ca_bundle = Some(want.clone());
                changed += 1;
            }
        }
        if changed == 0 {
            return Ok(CaBundle::Unchanged);
        }
        match api.replace(name, &PostParams::default(), &config).await {
            Ok(_) => return Ok(CaBundle::Patched(changed)),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(api_err("updating")(e)),
        }
    }
    Err(WebhookError::Contended { what: format!("ValidatingWebhookConfiguration {name}"), attempts: ATTEMPTS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_round_trips_its_bundle_and_names_a_missing_key() {
        let b = CertBundle { ca_pem: "ca".into(), cert_pem: "crt".into(), key_pem: "key".into() };
        let s = new_secret("ns", "n", &b);
        assert_eq!(bundle_of(&s).unwrap(), b);
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        let mut s = s;
        s.data.as_mut().unwrap().remove(KEY_KEY);
        assert_eq!(bundle_of(&s).unwrap_err(), "no data key tls.key");
        s.data.as_mut().unwrap().insert(KEY_KEY.into(), ByteString(vec![0xff, 0xfe]));
        assert_eq!(bundle_of(&s).unwrap_err(), "data key tls.key is not PEM text");
    }
}
