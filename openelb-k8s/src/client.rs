//! The Kubernetes client every openelb binary and tool builds the same way.

use std::path::{Path, PathBuf};

use kube::Client;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no usable Kubernetes configuration (in-cluster or KUBECONFIG): {0}")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// A client from `kubeconfig`, or else from the environment (in-cluster service account or `KUBECONFIG`).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let err = |source| ClientError::Kubeconfig { path: path.to_path_buf(), source };
            let file = kube::config::Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(err)?
        }
        None => kube::Config::infer().await.map_err(ClientError::Infer)?,
    };
    Client::try_from(config).map_err(ClientError::Client)
}
