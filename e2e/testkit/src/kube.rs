//! Kubernetes clients for tests (feature `kube`): a client from a kubeconfig file, manifests
//! applied as `kubectl apply --server-side` would, a kubeconfig that acts as a ServiceAccount
//! (so what RBAC refuses that account fails the test), and `kubectl` itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, Config, ResourceExt};

/// Field manager of everything the test kit applies.
const FIELD_MANAGER: &str = "testkit";

#[derive(Debug, thiserror::Error)]
pub enum KubeFixtureError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("kubectl {args} failed: {stderr}")]
    Kubectl { args: String, stderr: String },
}

pub type Result<T, E = KubeFixtureError> = std::result::Result<T, E>;

/// A client for the current context of the kubeconfig at `path`.
pub async fn client(path: &Path) -> Result<Client> {
    let kubeconfig = read_kubeconfig(path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| KubeFixtureError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
    Ok(Client::try_from(config)?)
}

fn read_kubeconfig(path: &Path) -> Result<Kubeconfig> {
    Kubeconfig::read_from(path).map_err(|source| KubeFixtureError::Kubeconfig {
        path: path.display().to_string(),
        source,
    })
}

/// Applies every document of a multi-document YAML manifest with server-side apply (forced,
/// as `kubectl apply --server-side --force-conflicts`). Namespaced objects without a
/// namespace go to `default_namespace`. Kinds are resolved through discovery, so CRDs work.
pub async fn apply_yaml(client: &Client, yaml: &str, default_namespace: &str) -> Result<Vec<DynamicObject>> {
    let documents: Vec<Option<DynamicObject>> =
        serde_saphyr::from_multiple(yaml).map_err(|e| KubeFixtureError::Manifest(e.to_string()))?;
    let mut applied = Vec::new();
    for object in documents.into_iter().flatten() {
        let types = object
            .types
            .clone()
            .ok_or_else(|| KubeFixtureError::Manifest(format!("{} has no apiVersion/kind", object.name_any())))?;
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| KubeFixtureError::Manifest(e.to_string()))?;
        let (resource, capabilities) = discovery::pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let namespace = object.namespace().unwrap_or_else(|| default_namespace.to_owned());
                Api::namespaced_with(client.clone(), &namespace, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        applied.push(api.patch(&object.name_any(), &params, &Patch::Apply(&object)).await?);
    }
    Ok(applied)
}

/// Writes a kubeconfig at `out` that talks to the same cluster as `admin_kubeconfig` but
/// authenticates as ServiceAccount `namespace/name`, with a token from the TokenRequest API
/// (valid for `lifetime`, at least ten minutes).
pub async fn service_account_kubeconfig(
    admin: &Client,
    admin_kubeconfig: &Path,
    namespace: &str,
    name: &str,
    lifetime: Duration,
    out: &Path,
) -> Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(lifetime.as_secs().max(600) as i64),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let issued = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await?;
    let token = issued
        .status
        .map(|s| s.token)
        .ok_or_else(|| KubeFixtureError::Manifest(format!("no token issued for {namespace}/{name}")))?;

    let mut kubeconfig = read_kubeconfig(admin_kubeconfig)?;
    let user = format!("system:serviceaccount:{namespace}:{name}");
    kubeconfig.auth_infos = vec![kube::config::NamedAuthInfo {
        name: user.clone(),
        auth_info: Some(AuthInfo {
            token: Some(token.into()),
            ..AuthInfo::default()
        }),
        other: Default::default(),
    }];
    for context in kubeconfig.contexts.iter_mut().filter_map(|c| c.context.as_mut()) {
        context.user = Some(user.clone());
        context.namespace = Some(namespace.to_owned());
    }
    let json = serde_json::to_vec_pretty(&kubeconfig).map_err(|e| KubeFixtureError::Manifest(e.to_string()))?;
    std::fs::write(out, json)?;
    Ok(())
}

/// `kubectl` bound to one kubeconfig and a private discovery cache, so runs never share (or
/// leave behind) cached discovery for a port another run may reuse.
#[derive(Debug, Clone)]
pub struct Kubectl {
    pub program: PathBuf,
    pub kubeconfig: PathBuf,
    pub cache_dir: PathBuf,
}

impl Kubectl {
    /// Uses `$KUBECTL` when set, else `/usr/bin/kubectl`.
    pub fn new(kubeconfig: &Path, cache_dir: &Path) -> Self {
        let program = std::env::var_os("KUBECTL").map_or_else(|| PathBuf::from("/usr/bin/kubectl"), PathBuf::from);
        Self {
            program,
            kubeconfig: kubeconfig.to_owned(),
            cache_dir: cache_dir.to_owned(),
        }
    }

    /// Runs kubectl and returns its stdout; a non-zero exit is an error carrying stderr.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        self.run_with_input(args, None).await
    }

    /// As `run`, with `stdin` piped in (for `kubectl create -f -`). Bounded to 30 s.
    pub async fn run_with_input(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        use tokio::io::AsyncWriteExt;
        let failed = |stderr: String| KubeFixtureError::Kubectl {
            args: args.join(" "),
            stderr,
        };
        let mut child = tokio::process::Command::new(&self.program)
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.unwrap_or("").as_bytes()).await?;
        }
        let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .map_err(|_| failed("no answer within 30 s".into()))??;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(failed(String::from_utf8_lossy(&output.stderr).trim().to_owned()))
        }
    }
}
