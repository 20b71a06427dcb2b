//! The limit `cargo xtask bench` holds `check -A` to: the raw paginated LISTs of the kinds it
//! reads, every kind at once and its pages in sequence, with the plugin's own client
//! ([`hpa_migrate::client::connect`]) and page size ([`hpa_migrate::kubeio::PAGE_SIZE`]). Each
//! page is decoded and dropped; nothing is analysed.
//!
//! `bench_lists --kubeconfig PATH (-A | -n NAMESPACE) GROUP/VERSION/PLURAL[/NAME]...`, e.g.
//! `apps/v1/deployments autoscaling/v2/horizontalpodautoscalers keda.sh/v1alpha1/scaledobjects`
//! (the core group is empty: `/v1/events`); with a NAME, one GET of that object. At most
//! [`IN_FLIGHT`] LISTs or GETs run at once, as the plugin reads named targets. A kind the server
//! does not serve (404) counts as empty, as `check` treats a missing KEDA.

use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};
use hpa_migrate::cli::KubeArgs;
use hpa_migrate::client;
use hpa_migrate::kubeio::{IN_FLIGHT, PAGE_SIZE};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Failure> {
    let mut args = KubeArgs::default();
    let mut resources = Vec::new();
    let mut rest = std::env::args().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--kubeconfig" => args.kubeconfig = rest.next().map(PathBuf::from),
            "-n" => args.namespace = rest.next(),
            "-A" => args.all_namespaces = true,
            resource => resources.push(parse_resource(resource)?),
        }
    }
    // The plugin's runtime: two worker threads.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let connection = client::connect(&args).await?;
        let reads = resources.iter().map(|(resource, name)| {
            let api: Api<DynamicObject> = if args.all_namespaces {
                Api::all_with(connection.client.clone(), resource)
            } else {
                Api::namespaced_with(connection.client.clone(), &connection.namespace, resource)
            };
            async move {
                let counted = match name {
                    Some(name) => api.get(name).await.map(|_| (1, 1))?,
                    None => list_pages(&api).await?,
                };
                Ok::<_, Failure>((resource.plural.clone(), counted))
            }
        });
        let done: Vec<_> = futures::stream::iter(reads).buffer_unordered(IN_FLIGHT).try_collect().await?;
        for (plural, (items, requests)) in done {
            println!("{plural}: {items} items in {requests} requests");
        }
        Ok(())
    })
}

/// Every page of one kind; returns the number of items and of pages.
async fn list_pages(api: &Api<DynamicObject>) -> Result<(usize, usize), Failure> {
    let mut params = ListParams::default().limit(PAGE_SIZE);
    let (mut items, mut pages) = (0, 0);
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok((0, pages + 1)),
            Err(e) => return Err(e.into()),
        };
        items += page.items.len();
        pages += 1;
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok((items, pages)),
        }
    }
}

fn parse_resource(text: &str) -> Result<(ApiResource, Option<String>), Failure> {
    let parts: Vec<&str> = text.split('/').collect();
    let (&[group, version, plural], name) = (&parts[..parts.len().min(3)], parts.get(3)) else {
        return Err(format!("expected GROUP/VERSION/PLURAL[/NAME], got {text}").into());
    };
    let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    let resource = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version,
        kind: String::new(),
        plural: plural.into(),
    };
    Ok((resource, name.map(|n| n.to_string())))
}
