//! `openelb-controller`: gives LoadBalancer Services addresses from Eips, against the Kubernetes API.
//!
//! A kube-runtime [`Controller`] on Services; Eip and Namespace changes re-enqueue every Service that concerns
//! us, because either can change a Service's answer (a pool appears, a selector starts matching). The Eips and
//! Namespaces are also mirrored into reflector caches that each reconcile reads whole.
//!
//! - [`plan`]: one Service's decision → the writes that carry it out (pure).
//! - [`reconcile`]: performs the writes; conflicts and back-off.
//!
//! Not done yet (issue 4, item 2): leader election, Eip finalizer and conditions, Events, metrics and health
//! endpoints, releasing addresses of Services deleted while the controller was away.

pub mod plan;
pub mod reconcile;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1 as corev1;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::oneshot;

pub use reconcile::{Context, FIELD_MANAGER, ReconcileError};

use crate::crd::Eip;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
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
    #[error("the {0} cache stopped before its first listing")]
    CacheNeverReady(&'static str),
    #[error("cannot start the controller runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the controller thread panicked")]
    Panicked,
}

/// A client from `kubeconfig`, or else from the environment (in-cluster service account or `KUBECONFIG`).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ControllerError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|source| ControllerError::Kubeconfig { path: path.to_path_buf(), source })?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| ControllerError::Kubeconfig { path: path.to_path_buf(), source })?
        }
        None => kube::Config::infer().await.map_err(ControllerError::Infer)?,
    };
    Client::try_from(config).map_err(ControllerError::Client)
}

/// Mirrors every object of `api` into a cache; the returned task keeps it current until aborted.
fn mirror<K>(api: Api<K>) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    let task = tokio::spawn(stream.for_each(|event| async move {
        if let Err(e) = event {
            tracing::warn!("watch of {}: {e}", K::kind(&()));
        }
    }));
    (store, task)
}

/// Every Service in the cache that a change of its pools or namespace could concern.
fn services_to_recheck(services: &Store<corev1::Service>, namespace: Option<&str>) -> Vec<ObjectRef<corev1::Service>> {
    services
        .state()
        .iter()
        .filter(|s| namespace.is_none_or(|ns| s.namespace().as_deref() == Some(ns)))
        .filter(|s| plan::concerns_us(s))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Runs until `shutdown` completes (then lets running reconciles finish).
pub async fn run(
    client: Client,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), ControllerError> {
    let (eips, eip_task) = mirror(Api::<Eip>::all(client.clone()));
    let (namespaces, ns_task) = mirror(Api::<corev1::Namespace>::all(client.clone()));
    let ready = async {
        eips.wait_until_ready().await.map_err(|_| ControllerError::CacheNeverReady("Eip"))?;
        namespaces.wait_until_ready().await.map_err(|_| ControllerError::CacheNeverReady("Namespace"))
    };
    let mut shutdown = Box::pin(shutdown);
    let started = tokio::select! {
        r = ready => r.map(|()| true),
        () = &mut shutdown => Ok(false),
    };
    if !matches!(started, Ok(true)) {
        eip_task.abort();
        ns_task.abort();
        return started.map(|_| ());
    }
    tracing::info!(eips = eips.state().len(), "caches ready; starting the Service controller");

    let ctx = Arc::new(Context::new(client.clone(), eips, namespaces));
    // One reconcile at a time: decisions are cheap, and serialising them avoids most write conflicts (the
    // resourceVersion guard still makes parallel ones safe).
    let controller = Controller::new(Api::<corev1::Service>::all(client.clone()), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(1));
    let services = controller.store();
    let for_eips = services.clone();
    controller
        .watches(Api::<Eip>::all(client.clone()), watcher::Config::default(), move |_: Eip| {
            services_to_recheck(&for_eips, None)
        })
        .watches(Api::<corev1::Namespace>::all(client), watcher::Config::default(), move |ns: corev1::Namespace| {
            services_to_recheck(&services, Some(&ns.name_any()))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((svc, _)) => tracing::trace!(service = %svc, "reconciled"),
                Err(controller::Error::ReconcilerFailed(e, svc)) => tracing::debug!(service = %svc, "{e}"),
                // Re-enqueued by an Eip or Namespace change just after it was deleted: nothing to do.
                Err(controller::Error::ObjectNotFound(svc)) => tracing::debug!(service = %svc, "gone"),
                Err(e) => tracing::warn!("controller: {e}"),
            }
        })
        .await;
    eip_task.abort();
    ns_task.abort();
    Ok(())
}

/// A controller on its own thread and runtime, for callers that have none (tests, tools).
pub struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ControllerError>>>,
}

impl Background {
    /// Starts a controller with the client from `kubeconfig`.
    pub fn spawn(kubeconfig: PathBuf) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(ControllerError::Runtime)?;
            runtime.block_on(async move {
                let client = client(Some(&kubeconfig)).await?;
                run(client, async move {
                    let _ = stopped.await;
                })
                .await
            })
        });
        Background { stop: Some(stop), thread: Some(thread) }
    }

    /// Stops the controller and waits for it; returns how it ended.
    pub fn stop(mut self) -> Result<(), ControllerError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ControllerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| ControllerError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
