//! The webhook's TLS material: generating a private CA and a serving certificate with rcgen, deciding whether a
//! bundle can still be served, and turning it into a rustls server configuration.
//!
//! Everything here is pure (the clock comes in as a value), so expiry and rotation are tested without waiting.
//! A bundle is judged with rustls' own WebPKI verifier, the same kind of check the API server's TLS client makes:
//! the chain to the CA, the validity period and the host names.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ServerConfig;
use rustls::sign::CertifiedKey;

/// How long a generated CA is valid: long enough that the caBundle of the webhook configuration rarely changes.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a generated serving certificate is valid.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A bundle that expires sooner than this is replaced, so rotation happens long before anything fails.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Generated certificates start this far in the past, so a node whose clock lags a little still accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);
const CA_COMMON_NAME: &str = "openelb-webhook-ca";

/// PEM text of what a TLS server needs (`cert_pem`, `key_pem`) and of the CA that clients trust (`ca_pem`).
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    /// One or more CA certificates; during a rotation the previous CA follows the new one, so both verify.
    pub ca_pem: String,
    /// The serving certificate, optionally followed by intermediates.
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertBundle {
    // The private key never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating the webhook {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> CertError {
    CertError::Invalid { what: what.into(), reason: reason.to_string() }
}

/// The names the API server uses to reach a webhook behind `service` in `namespace`.
pub fn service_hosts(service: &str, namespace: &str) -> Vec<String> {
    vec![format!("{service}.{namespace}.svc"), format!("{service}.{namespace}.svc.cluster.local")]
}

/// A new CA and a serving certificate for `hosts` (DNS names or IP addresses) signed by it.
pub fn generate(hosts: &[String], now: SystemTime) -> Result<CertBundle, CertError> {
    let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
    let gen_err = |what| move |source| CertError::Generate { what, source };

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = not_before.into();
    ca_params.not_after = (not_before + CA_VALIDITY).into();
    let ca_key = KeyPair::generate().map_err(gen_err("CA key"))?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err("CA certificate"))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(hosts.to_vec()).map_err(gen_err("serving certificate's names"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = hosts.first() {
        params.distinguished_name.push(DnType::CommonName, first.as_str());
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before.into();
    params.not_after = (not_before + SERVING_VALIDITY).into();
    let key = KeyPair::generate().map_err(gen_err("serving key"))?;
    let cert = params.signed_by(&key, &issuer).map_err(gen_err("serving certificate"))?;

    Ok(CertBundle { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// `fresh` with the first CA of `previous` appended when that CA still verifies `previous`'s serving certificate
/// at `now`: replicas that still serve the old certificate keep working until they pick up the new one.
pub fn with_previous_ca(mut fresh: CertBundle, previous: Option<&CertBundle>, now: SystemTime) -> CertBundle {
    let Some(previous) = previous else { return fresh };
    let Some(old_ca_pem) = first_certificate_block(&previous.ca_pem) else { return fresh };
    let Ok(old_ca) = parse_certs("ca.crt", old_ca_pem) else { return fresh };
    let still_trusted = parse_certs("tls.crt", &previous.cert_pem)
        .ok()
        .and_then(|chain| chain.into_iter().next())
        .is_some_and(|leaf| chain_ok(&old_ca, &leaf, &[], None, now).is_ok());
    if still_trusted {
        if !fresh.ca_pem.ends_with('\n') {
            fresh.ca_pem.push('\n');
        }
        fresh.ca_pem.push_str(old_ca_pem);
        fresh.ca_pem.push('\n');
    }
    fresh
}

/// The text of the first PEM certificate in `pem`, markers included.
fn first_certificate_block(pem: &str) -> Option<&str> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)?;
    let end = start + pem[start..].find(END)? + END.len();
    Some(&pem[start..end])
}

fn parse_certs(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(what, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| invalid("tls.key", format!("not a PEM private key: {e}")))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn unix(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
}

/// Verifies `leaf` (with `intermediates`) against `cas` at `at`, for `host` when given.
fn chain_ok(
    cas: &[CertificateDer<'static>],
    leaf: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
    host: Option<&str>,
    at: SystemTime,
) -> Result<(), CertError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).map_err(|e| invalid("ca.crt", format!("not a usable CA certificate: {e}")))?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| invalid("ca.crt", e))?;
    // Without a host only the chain and the dates matter; the CA's own name stands in for one.
    let name = host.unwrap_or(CA_COMMON_NAME);
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| invalid("host", format!("{name:?} is not a host name: {e}")))?;
    match verifier.verify_server_cert(leaf, intermediates, &server_name, &[], unix(at)) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)) if host.is_none() => Ok(()),
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. }))
            if host.is_none() =>
        {
            Ok(())
        }
        Err(e) => Err(invalid("tls.crt", e)),
    }
}

/// Why `bundle` should not be served for `hosts` from `now` for at least `margin`, or `Ok` when it can be:
/// every PEM parses, the key belongs to the certificate, and the certificate chains to the CA and names every
/// host both now and `margin` later.
pub fn check(bundle: &CertBundle, hosts: &[String], now: SystemTime, margin: Duration) -> Result<(), CertError> {
    let cas = parse_certs("ca.crt", &bundle.ca_pem)?;
    let chain = parse_certs("tls.crt", &bundle.cert_pem)?;
    let key = parse_key(&bundle.key_pem)?;
    CertifiedKey::from_der(chain.clone(), key, &provider())
        .map_err(|e| invalid("tls.key", format!("does not belong to the certificate in tls.crt: {e}")))?;
    let (leaf, intermediates) = chain.split_first().ok_or_else(|| invalid("tls.crt", "empty"))?;
    let later = now + margin;
    for at in [now, later] {
        if hosts.is_empty() {
            chain_ok(&cas, leaf, intermediates, None, at)?;
        }
        for host in hosts {
            chain_ok(&cas, leaf, intermediates, Some(host), at).map_err(|e| match e {
                CertError::Invalid { reason, .. } if at == later => {
                    invalid("tls.crt", format!("for {host} in {} days: {reason}", margin.as_secs() / 86400))
                }
                CertError::Invalid { reason, .. } => invalid("tls.crt", format!("for {host}: {reason}")),
                other => other,
            })?;
        }
    }
    Ok(())
}

/// A rustls server configuration (ring, HTTP/1.1) that presents `cert_pem` with `key_pem`.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, CertError> {
    let chain = parse_certs("tls.crt", cert_pem)?;
    let key = parse_key(key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS configuration", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid("tls.crt and tls.key", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn hosts() -> Vec<String> {
        let mut h = service_hosts("openelb-webhook", "openelb-system");
        h.push("127.0.0.1".to_string());
        h
    }

    #[test]
    fn a_generated_bundle_is_valid_for_its_hosts_and_not_for_others() {
        let now = SystemTime::now();
        let b = generate(&hosts(), now).unwrap();
        check(&b, &hosts(), now, RENEW_BEFORE).unwrap();
        let err = check(&b, &["other.openelb-system.svc".to_string()], now, RENEW_BEFORE).unwrap_err();
        assert!(err.to_string().contains("other.openelb-system.svc"), "{err}");
        server_config(&b.cert_pem, &b.key_pem).unwrap();
    }

    #[test]
    fn a_bundle_is_renewed_thirty_days_before_the_serving_certificate_expires() {
        let made = SystemTime::now();
        let b = generate(&hosts(), made).unwrap();
        check(&b, &hosts(), made + SERVING_VALIDITY - RENEW_BEFORE - 2 * DAY, RENEW_BEFORE).unwrap();
        let err = check(&b, &hosts(), made + SERVING_VALIDITY - RENEW_BEFORE + DAY, RENEW_BEFORE).unwrap_err();
        assert!(err.to_string().contains("in 30 days"), "{err}");
        assert!(check(&b, &hosts(), made + SERVING_VALIDITY + DAY, Duration::ZERO).is_err());
    }

    #[test]
    fn a_key_of_another_certificate_or_a_foreign_ca_is_refused() {
        let now = SystemTime::now();
        let a = generate(&hosts(), now).unwrap();
        let b = generate(&hosts(), now).unwrap();
        let mixed_key = CertBundle { key_pem: b.key_pem.clone(), ..a.clone() };
        let err = check(&mixed_key, &hosts(), now, RENEW_BEFORE).unwrap_err();
        assert!(err.to_string().starts_with("tls.key"), "{err}");
        let foreign_ca = CertBundle { ca_pem: b.ca_pem.clone(), ..a.clone() };
        let err = check(&foreign_ca, &hosts(), now, RENEW_BEFORE).unwrap_err();
        assert!(err.to_string().starts_with("tls.crt"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_naming_the_key_of_the_secret() {
        let now = SystemTime::now();
        let a = generate(&hosts(), now).unwrap();
        for (bundle, key) in [
            (CertBundle { ca_pem: "nope".into(), ..a.clone() }, "ca.crt"),
            (CertBundle { cert_pem: String::new(), ..a.clone() }, "tls.crt"),
            (
                CertBundle {
                    key_pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
                    ..a.clone()
                },
                "tls.key",
            ),
        ] {
            let err = check(&bundle, &hosts(), now, RENEW_BEFORE).unwrap_err();
            assert!(err.to_string().starts_with(key), "{key}: {err}");
        }
    }

    #[test]
    fn a_rotation_keeps_trusting_the_previous_serving_certificate() {
        let now = SystemTime::now();
        let old = generate(&hosts(), now).unwrap();
        let new = with_previous_ca(generate(&hosts(), now).unwrap(), Some(&old), now);
        check(&new, &hosts(), now, RENEW_BEFORE).unwrap();
        let old_served_with_new_ca = CertBundle { ca_pem: new.ca_pem.clone(), ..old.clone() };
        check(&old_served_with_new_ca, &hosts(), now, RENEW_BEFORE).unwrap();
        assert_eq!(parse_certs("ca.crt", &new.ca_pem).unwrap().len(), 2);
        // Only one previous CA is carried: a second rotation drops the oldest.
        let newer = with_previous_ca(generate(&hosts(), now).unwrap(), Some(&new), now);
        assert_eq!(parse_certs("ca.crt", &newer.ca_pem).unwrap().len(), 2);
    }
}
