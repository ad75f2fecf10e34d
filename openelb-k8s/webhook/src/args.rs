//! Command-line flags for serving the webhook, to `#[command(flatten)]` into a binary's arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{CertSource, DEFAULT_RECHECK, WebhookConfig};

/// Namespace of the Secret and Service when neither `--webhook-namespace` nor `POD_NAMESPACE` says.
pub const DEFAULT_NAMESPACE: &str = "openelb-system";
/// The environment variable the Deployment fills from the downward API.
pub const POD_NAMESPACE_ENV: &str = "POD_NAMESPACE";
/// Defaults that `deploy/` must agree with (its RBAC names them; a test checks).
pub const DEFAULT_SECRET: &str = "openelb-webhook-cert";
pub const DEFAULT_SERVICE: &str = "openelb-webhook";
pub const DEFAULT_CONFIG_NAME: &str = "openelb-eip-validator";

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct WebhookArgs {
    /// Do not serve the Eip admission webhook (delete the ValidatingWebhookConfiguration too, or Eip writes fail).
    #[arg(long)]
    pub no_webhook: bool,
    /// Address of the admission webhook (HTTPS).
    #[arg(long, default_value = super::DEFAULT_ADDR, value_name = "ADDR")]
    pub webhook_addr: SocketAddr,
    /// Serve tls.crt and tls.key from this directory (e.g. a cert-manager Secret) instead of a certificate of
    /// our own; the caBundle is then left to whoever issues them.
    #[arg(long, value_name = "DIR")]
    pub webhook_cert_dir: Option<PathBuf>,
    /// Secret holding the self-managed CA and serving certificate (created when missing).
    #[arg(long, default_value = DEFAULT_SECRET, value_name = "NAME")]
    pub webhook_secret: String,
    /// Namespace of that Secret and of the webhook Service [default: $POD_NAMESPACE, else openelb-system].
    #[arg(long, value_name = "NS")]
    pub webhook_namespace: Option<String>,
    /// Service in front of the webhook; the certificate names `<service>.<namespace>.svc`.
    #[arg(long, default_value = DEFAULT_SERVICE, value_name = "NAME")]
    pub webhook_service: String,
    /// ValidatingWebhookConfiguration whose caBundle is kept equal to the self-managed CA.
    #[arg(long, default_value = DEFAULT_CONFIG_NAME, value_name = "NAME")]
    pub webhook_config_name: String,
}

impl WebhookArgs {
    /// The configuration to serve, or `None` with `--no-webhook`. `pod_namespace` is `$POD_NAMESPACE` (passed
    /// in so tests need not touch the process environment).
    pub fn to_config(&self, pod_namespace: Option<&str>) -> Option<WebhookConfig> {
        if self.no_webhook {
            return None;
        }
        let namespace = self
            .webhook_namespace
            .as_deref()
            .or(pod_namespace.filter(|ns| !ns.is_empty()))
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string();
        let certs = match &self.webhook_cert_dir {
            Some(dir) => CertSource::Dir(dir.clone()),
            None => CertSource::SelfManaged {
                secret_namespace: namespace.clone(),
                secret_name: self.webhook_secret.clone(),
                service_name: self.webhook_service.clone(),
                service_namespace: namespace,
                webhook_config_name: self.webhook_config_name.clone(),
                extra_hosts: Vec::new(),
            },
        };
        Some(WebhookConfig { addr: self.webhook_addr, certs, recheck: DEFAULT_RECHECK })
    }

    /// [`WebhookArgs::to_config`] with `$POD_NAMESPACE` from the environment.
    pub fn config_from_env(&self) -> Option<WebhookConfig> {
        let ns = std::env::var(POD_NAMESPACE_ENV).ok();
        self.to_config(ns.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        webhook: WebhookArgs,
    }

    fn parse(args: &[&str]) -> WebhookArgs {
        Cli::try_parse_from(std::iter::once("openelb-controller").chain(args.iter().copied())).unwrap().webhook
    }

    #[test]
    fn defaults_serve_a_self_managed_certificate_in_the_pod_namespace() {
        let config = parse(&[]).to_config(Some("lb")).unwrap();
        assert_eq!(config.addr, "0.0.0.0:9443".parse().unwrap());
        assert_eq!(
            config.certs,
            CertSource::SelfManaged {
                secret_namespace: "lb".into(),
                secret_name: "openelb-webhook-cert".into(),
                service_name: "openelb-webhook".into(),
                service_namespace: "lb".into(),
                webhook_config_name: "openelb-eip-validator".into(),
                extra_hosts: vec![],
            }
        );
        assert_eq!(config.certs.hosts(), ["openelb-webhook.lb.svc", "openelb-webhook.lb.svc.cluster.local"]);
        let config = parse(&[]).to_config(None).unwrap();
        assert!(
            matches!(config.certs, CertSource::SelfManaged { ref secret_namespace, .. } if secret_namespace == "openelb-system")
        );
    }

    #[test]
    fn flags_choose_a_directory_another_address_or_no_webhook() {
        let config =
            parse(&["--webhook-cert-dir", "/certs", "--webhook-addr", "127.0.0.1:8443"]).to_config(None).unwrap();
        assert_eq!(config.certs, CertSource::Dir("/certs".into()));
        assert_eq!(config.addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(parse(&["--no-webhook"]).to_config(None), None);
        let config = parse(&["--webhook-namespace", "x"]).to_config(Some("lb")).unwrap();
        assert_eq!(config.certs.hosts()[0], "openelb-webhook.x.svc");
    }
}
