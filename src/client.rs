//! The one place a kube client is built, following kubectl's conventions: `--kubeconfig`, then
//! `KUBECONFIG` (several paths, merged), then `~/.kube/config`, then the in-cluster service
//! account; `--context`, `--cluster` and `--user` pick from the kubeconfig; the namespace is
//! `-n`, else the context's namespace, else `default`. TLS verification is never turned off.

use http::HeaderValue;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::KubeArgs;
use crate::error::{Endpoint, Error, Result};

pub const USER_AGENT: &str = concat!("kubectl-hpa-migrate/", env!("CARGO_PKG_VERSION"));

pub struct Connection {
    pub client: Client,
    /// The namespace commands work in when neither `-n` nor `-A` is given.
    pub namespace: String,
    /// The context and server connected to.
    pub endpoint: Endpoint,
}

/// The process's one connection: errors about credentials and connections name its endpoint.
/// `args.context` holds at most one context here (several are run by `commands::fleet`).
pub async fn connect(args: &KubeArgs) -> Result<Connection> {
    let connection = open(args).await?;
    crate::error::set_endpoint(connection.endpoint.clone());
    Ok(connection)
}

/// A connection to the one context `args` names (or the current one), leaving the process's
/// endpoint alone: `commands::fleet` opens one per context and names each in its own messages.
pub async fn open(args: &KubeArgs) -> Result<Connection> {
    let mut config = load_config(args).await?;
    // Plugins must not weaken what kubectl enforces.
    config.accept_invalid_certs = false;
    config.headers.push((http::header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
    let namespace = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let endpoint = Endpoint {
        context: context_name(args),
        server: config.cluster_url.to_string().trim_end_matches('/').to_string(),
    };
    let client = Client::try_from(config).map_err(|e| Error::Kubeconfig { path: None, message: e.to_string() })?;
    Ok(Connection { client, namespace, endpoint })
}

fn requested_context(args: &KubeArgs) -> Option<String> {
    args.context.first().cloned()
}

/// The context in use, as kubectl names it: `--context`, else the kubeconfig's current one.
fn context_name(args: &KubeArgs) -> Option<String> {
    if let Some(context) = requested_context(args) {
        return Some(context);
    }
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path).ok(),
        None => Kubeconfig::read().ok(),
    };
    kubeconfig.and_then(|k| k.current_context)
}

async fn load_config(args: &KubeArgs) -> Result<Config> {
    let options =
        KubeConfigOptions { context: requested_context(args), cluster: args.cluster.clone(), user: args.user.clone() };
    let has_kubeconfig = std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
        || home::home_dir().is_some_and(|home| home.join(".kube/config").is_file());
    if args.kubeconfig.is_none() && !has_kubeconfig && args.context.is_empty() {
        return Config::incluster().map_err(|e| Error::Kubeconfig {
            path: None,
            message: format!(
                "no kubeconfig found (--kubeconfig, KUBECONFIG, ~/.kube/config) and not running in a cluster ({}); point --kubeconfig at one",
                one_line(&e)
            ),
        });
    }
    let path = args.kubeconfig.clone();
    let bad = |e: &dyn std::error::Error| Error::Kubeconfig { path: path.clone(), message: one_line(e) };
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|e| bad(&e))?;
    // kube falls back to anonymous for a --user the kubeconfig does not have; kubectl refuses.
    if let Some(user) = &args.user
        && !kubeconfig.auth_infos.iter().any(|a| &a.name == user)
    {
        return Err(Error::Kubeconfig { path, message: format!("no user \"{user}\" in the kubeconfig (--user)") });
    }
    Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| bad(&e))
}

/// An error as one line: the innermost cause (kube's outer messages quote paths in Debug form),
/// of a multi-line parser message the first line (the rest quotes the input).
pub(crate) fn one_line(error: &dyn std::error::Error) -> String {
    let mut messages = vec![error.to_string()];
    let mut current = error;
    while let Some(next) = current.source() {
        messages.push(next.to_string());
        current = next;
    }
    let text = if messages.len() > 1 { messages.last().cloned().unwrap_or_default() } else { messages.remove(0) };
    text.lines().next().unwrap_or_default().trim().to_string()
}
