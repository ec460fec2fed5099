//! The verbs: get, list, create, update, patch, delete (with finalizers and cascading
//! deletion) and the `status`/`scale` subresource rules, independent of HTTP.

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::crd;
use crate::patch::{apply, json as jsonpatch, merge, strategic};
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult, Cause};
use crate::store::{State, Store, TypeKey};

/// Which resource a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub rt: ResourceType,
    pub version: String,
    /// `None` for cluster-scoped types or an all-namespaces collection.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    fn ns(&self) -> String {
        if self.rt.namespaced {
            self.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        }
    }
    fn name(&self) -> String {
        self.name.clone().unwrap_or_default()
    }
    fn key(&self) -> TypeKey {
        self.rt.key()
    }
    fn not_found(&self) -> ApiError {
        ApiError::not_found(&self.rt.group, &self.rt.plural, &self.name())
    }
}

/// `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

#[derive(Debug, Clone)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub field_manager: Option<String>,
    pub force: bool,
}

impl Default for WriteOpts {
    fn default() -> Self {
        Self {
            dry_run: false,
            field_validation: FieldValidation::Warn,
            field_manager: None,
            force: false,
        }
    }
}

/// A successful write.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Sets `apiVersion`/`kind` for the version a client asked for (no conversion is needed for
/// the kinds served here: CRDs use `conversion: None`).
pub fn to_version(mut obj: Value, rt: &ResourceType, version: &str) -> Value {
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), Value::String(rt.api_version(version)));
        m.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    obj
}

static SUBDOMAIN: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").expect("static regex")
});

fn validate_name(name: &str) -> Option<Cause> {
    if name.len() > 253 || !SUBDOMAIN.is_match(name) {
        return Some(Cause::new(
            "FieldValueInvalid",
            "metadata.name",
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ),
        ));
    }
    None
}

fn random_suffix() -> String {
    // The alphabet the real server uses for generateName (no vowels, no confusable digits).
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4();
    bytes
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

/// Everything except metadata and status: what `metadata.generation` tracks.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Value::Object(m) = &mut o {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

fn without_volatile(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

fn meta_str<'v>(obj: &'v Value, field: &str) -> Option<&'v str> {
    obj["metadata"][field].as_str().filter(|s| !s.is_empty())
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Built-in defaulting for the fields kubectl and the operator look at.
fn default_builtin(rt: &ResourceType, obj: &mut Value, creating: bool) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments") => {
            let spec = &mut obj["spec"];
            if spec.get("replicas").is_none() {
                spec["replicas"] = json!(1);
            }
            if spec.get("revisionHistoryLimit").is_none() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if spec.get("progressDeadlineSeconds").is_none() {
                spec["progressDeadlineSeconds"] = json!(600);
            }
            if spec.get("strategy").is_none() {
                spec["strategy"] = json!({"type": "RollingUpdate"});
            }
            if spec["strategy"]["type"] == "RollingUpdate" && spec["strategy"].get("rollingUpdate").is_none() {
                spec["strategy"]["rollingUpdate"] = json!({"maxSurge": "25%", "maxUnavailable": "25%"});
            }
        }
        ("", "services") => {
            let spec = &mut obj["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("sessionAffinity").is_none() {
                spec["sessionAffinity"] = json!("None");
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if p.get("protocol").is_none() {
                        p["protocol"] = json!("TCP");
                    }
                    if p.get("targetPort").is_none() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
            if creating && spec.get("clusterIP").is_none() && spec["type"] != "ExternalName" {
                let b = uuid::Uuid::new_v4();
                let ip = format!("10.96.{}.{}", b.as_bytes()[0], b.as_bytes()[1].max(1));
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
        }
        ("", "secrets") => {
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
            // stringData is write-only: folded into base64 data.
            if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
                use base64::Engine;
                for (k, v) in sd {
                    let enc = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
                    obj["data"][k] = Value::String(enc);
                }
            }
        }
        ("", "namespaces") if obj["spec"].get("finalizers").is_none() => {
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        _ => {}
    }
    if obj["metadata"]["labels"].is_null() && rt.plural == "namespaces" {
        let name = obj["metadata"]["name"].clone();
        obj["metadata"]["labels"] = json!({"kubernetes.io/metadata.name": name});
    }
}

/// Prunes, defaults and validates a custom resource or CRD; returns warnings.
fn admit(st: &State, t: &Target, obj: &mut Value, old: Option<&Value>, opts: &WriteOpts) -> ApiResult<Vec<String>> {
    let mut causes = Vec::new();
    let mut warnings = Vec::new();
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    if let Some(c) = validate_name(&name) {
        causes.push(c);
    }
    if let Some(v) = t.rt.crd_version(&t.version)
        && let Some(schema) = &v.schema
    {
        let unknown = crd::prune(obj, schema);
        if !unknown.is_empty() {
            match opts.field_validation {
                FieldValidation::Strict => {
                    let list: Vec<String> = unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect();
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        list.join(", ")
                    )));
                }
                FieldValidation::Warn => warnings.extend(unknown.iter().map(|u| format!("unknown field \"{u}\""))),
                FieldValidation::Ignore => {}
            }
        }
        *obj = crd::apply_defaults(obj, schema);
        causes.extend(crd::validate_object(obj, schema));
        if causes.is_empty() {
            causes.extend(crd::validate_cel(v, obj, old));
        }
    }
    if t.rt.group == "apiextensions.k8s.io" {
        causes.extend(crd::validate_crd(obj));
        if causes.is_empty() {
            // A group/plural must not be taken by a built-in kind.
            let group = obj["spec"]["group"].as_str().unwrap_or_default().to_string();
            let plural = obj["spec"]["names"]["plural"].as_str().unwrap_or_default().to_string();
            if let Some(existing) = st.types.get(&(group, plural))
                && existing.crd_name.is_none()
            {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    "spec.names.plural",
                    "Invalid value: served by a built-in type",
                ));
            }
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(&t.rt.kind, &t.rt.group, &name, causes));
    }
    Ok(warnings)
}

/// Validates, stamps and stores a new or updated object (the common tail of every write).
fn commit(st: &mut State, t: &Target, mut obj: Value, old: Option<&Value>, opts: &WriteOpts) -> ApiResult<Written> {
    let ts = now();
    let key = t.key();
    let ns = t.ns();
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body of the request must be an object"));
    }
    // Type checks: a body for another kind is a client bug the real server rejects.
    if let Some(kind) = obj["kind"].as_str()
        && kind != t.rt.kind
        && t.subresource.is_none()
    {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): kind {kind}",
            t.rt.kind
        )));
    }
    obj = to_version(obj, &t.rt, &t.version);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if t.rt.namespaced {
        match meta_str(&obj, "namespace") {
            Some(body_ns) if body_ns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => obj["metadata"]["namespace"] = Value::String(ns.clone()),
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }

    let created = old.is_none();
    let mut warnings = Vec::new();
    match old {
        None => {
            if t.rt.namespaced {
                let ns_obj = st.get(&(String::new(), "namespaces".into()), "", &ns);
                match ns_obj {
                    None => return Err(ApiError::namespace_not_found(&ns)),
                    Some(n) if n["metadata"].get("deletionTimestamp").is_some() => {
                        return Err(ApiError::new(
                            403,
                            "Forbidden",
                            format!(
                                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                                crate::status::qualified(&t.rt.plural, &t.rt.group),
                                meta_str(&obj, "name").unwrap_or_default()
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if meta_str(&obj, "name").is_none() {
                match meta_str(&obj, "generateName").map(String::from) {
                    Some(prefix) => obj["metadata"]["name"] = Value::String(format!("{prefix}{}", random_suffix())),
                    None => {
                        return Err(ApiError::invalid(
                            &t.rt.kind,
                            &t.rt.group,
                            "",
                            vec![Cause::new(
                                "FieldValueRequired",
                                "metadata.name",
                                "Required value: name or generateName is required",
                            )],
                        ));
                    }
                }
            }
            let name = meta_str(&obj, "name").unwrap_or_default().to_string();
            if st.get(&key, &ns, &name).is_some() {
                return Err(ApiError::already_exists(&t.rt.group, &t.rt.plural, &name));
            }
            let meta = obj["metadata"]
                .as_object_mut()
                .ok_or_else(|| ApiError::internal("metadata"))?;
            meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), Value::String(ts.clone()));
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            meta.remove("resourceVersion");
            if t.rt.generation {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
            if t.rt.status_subresource {
                // Status is written through /status only; the real server resets it on create.
                match (t.rt.group.as_str(), t.rt.plural.as_str()) {
                    ("", "namespaces") => obj["status"] = json!({"phase": "Active"}),
                    ("apps", "deployments") => obj["status"] = json!({}),
                    ("", "services") | ("networking.k8s.io", "ingresses") => {
                        obj["status"] = json!({"loadBalancer": {}})
                    }
                    _ => {
                        if let Some(m) = obj.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            if t.rt.crd.is_none() {
                default_builtin(&t.rt, &mut obj, true);
            }
            warnings.extend(admit(st, t, &mut obj, None, opts)?);
        }
        Some(old) => {
            let old_rv = meta_str(old, "resourceVersion").unwrap_or_default().to_string();
            if let Some(rv) = meta_str(&obj, "resourceVersion")
                && rv != old_rv
            {
                return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, &t.name()));
            }
            if meta_str(&obj, "uid").is_some_and(|u| Some(u) != meta_str(old, "uid")) {
                return Err(ApiError::conflict_msg(
                    &t.rt.group,
                    &t.rt.plural,
                    &t.name(),
                    format!(
                        "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                        meta_str(&obj, "uid").unwrap_or_default(),
                        meta_str(old, "uid").unwrap_or_default()
                    ),
                ));
            }
            let name = t.name();
            if meta_str(&obj, "name").is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&obj, "name").unwrap_or_default()
                )));
            }
            obj["metadata"]["name"] = Value::String(name);
            match t.subresource.as_deref() {
                Some("status") => {
                    // /status changes status (and our managedFields bookkeeping) only.
                    let mut merged = old.clone();
                    merged["status"] = obj["status"].clone();
                    if merged["status"].is_null()
                        && let Some(m) = merged.as_object_mut()
                    {
                        m.remove("status");
                    }
                    if let Some(mf) = obj["metadata"].get("managedFields") {
                        merged["metadata"]["managedFields"] = mf.clone();
                    }
                    obj = merged;
                }
                _ => {
                    if t.rt.status_subresource {
                        match old.get("status") {
                            Some(s) => obj["status"] = s.clone(),
                            None => {
                                if let Some(m) = obj.as_object_mut() {
                                    m.remove("status");
                                }
                            }
                        }
                    }
                    for f in [
                        "uid",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "deletionGracePeriodSeconds",
                    ] {
                        match old["metadata"].get(f) {
                            Some(v) => obj["metadata"][f] = v.clone(),
                            None => {
                                if let Some(m) = obj["metadata"].as_object_mut() {
                                    m.remove(f);
                                }
                            }
                        }
                    }
                    if obj["metadata"].get("managedFields").is_none()
                        && let Some(mf) = old["metadata"].get("managedFields")
                    {
                        obj["metadata"]["managedFields"] = mf.clone();
                    }
                    if t.rt.crd.is_none() {
                        default_builtin(&t.rt, &mut obj, false);
                    }
                }
            }
            obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
            obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
            if t.rt.generation {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let bump = spec_part(&obj) != spec_part(old);
                obj["metadata"]["generation"] = json!(if bump { g + 1 } else { g });
            }
            if old["metadata"].get("deletionTimestamp").is_some() {
                let before: HashSet<String> = finalizers(old).into_iter().collect();
                if finalizers(&obj).iter().any(|f| !before.contains(f)) {
                    return Err(ApiError::invalid(
                        &t.rt.kind,
                        &t.rt.group,
                        &t.name(),
                        vec![Cause::new(
                            "FieldValueForbidden",
                            "metadata.finalizers",
                            "Forbidden: no new finalizers can be added if the object is being deleted",
                        )],
                    ));
                }
            }
            warnings.extend(admit(st, t, &mut obj, Some(old), opts)?);
            if without_volatile(&obj) == without_volatile(old) {
                // A no-op write does not bump the resourceVersion nor notify watchers.
                return Ok(Written {
                    object: old.clone(),
                    created: false,
                    warnings,
                });
            }
        }
    }
    if opts.dry_run {
        return Ok(Written {
            object: obj,
            created,
            warnings,
        });
    }
    if t.rt.group == "apiextensions.k8s.io" {
        crd::default_and_establish(&mut obj, &ts);
        let served = crd::resource_type(&obj);
        st.types.insert(served.key(), served);
    }
    let mut stored = st.put(&key, obj);
    if stored["metadata"].get("deletionTimestamp").is_some()
        && finalizers(&stored).is_empty()
        && let Some(gone) = finalize_removal(st, &key, &ns, &t.name_or(&stored))
    {
        stored = gone;
    }
    collect_garbage(st);
    Ok(Written {
        object: to_version(stored, &t.rt, &t.version),
        created,
        warnings,
    })
}

impl Target {
    fn name_or(&self, obj: &Value) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| meta_str(obj, "name").unwrap_or_default().to_string())
    }
}

/// Removes an object whose last finalizer is gone; a CRD takes its type and objects with it.
fn finalize_removal(st: &mut State, key: &TypeKey, ns: &str, name: &str) -> Option<Value> {
    let gone = st.remove(key, ns, name)?;
    if key.0 == "apiextensions.k8s.io" && key.1 == "customresourcedefinitions" {
        let group = gone["spec"]["group"].as_str().unwrap_or_default().to_string();
        let plural = gone["spec"]["names"]["plural"].as_str().unwrap_or_default().to_string();
        let tk = (group, plural);
        let names: Vec<(String, String)> = st
            .objects_of(&tk)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (ons, oname) in names {
            st.remove(&tk, &ons, &oname);
        }
        st.types.remove(&tk);
        st.objects.remove(&tk);
    }
    Some(gone)
}

/// Marks an object deleted: removed now when it has no finalizers, else `deletionTimestamp` is set.
fn delete_object(st: &mut State, key: &TypeKey, ns: &str, name: &str, foreground: bool) -> Option<Value> {
    let mut obj = st.get(key, ns, name)?.clone();
    let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
    let has_dependents = foreground && st.objects.values().flat_map(|m| m.values()).any(|o| owned_by(o, &uid));
    let mut fins = finalizers(&obj);
    if has_dependents && !fins.iter().any(|f| f == "foregroundDeletion") {
        fins.push("foregroundDeletion".into());
    }
    if fins.is_empty() {
        return finalize_removal(st, key, ns, name);
    }
    let changed = obj["metadata"].get("deletionTimestamp").is_none() || fins != finalizers(&obj);
    if changed {
        if obj["metadata"].get("deletionTimestamp").is_none() {
            obj["metadata"]["deletionTimestamp"] = Value::String(now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        obj["metadata"]["finalizers"] = json!(fins);
        if key.1 == "namespaces" && key.0.is_empty() {
            obj["status"]["phase"] = json!("Terminating");
        }
        obj = st.put(key, obj);
    }
    Some(obj)
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
}

/// The garbage collector and namespace controller, run synchronously after each write:
/// dependents of deleted owners go, foreground deletions finish when their dependents are gone,
/// terminating namespaces are emptied and then removed.
fn collect_garbage(st: &mut State) {
    for _ in 0..64 {
        let mut alive: HashSet<String> = HashSet::new();
        let mut all: Vec<(TypeKey, String, String, Value)> = Vec::new();
        for (key, objs) in &st.objects {
            for ((ns, name), o) in objs {
                if let Some(uid) = meta_str(o, "uid") {
                    alive.insert(uid.to_string());
                }
                all.push((key.clone(), ns.clone(), name.clone(), o.clone()));
            }
        }
        let terminating_ns: HashSet<String> = st
            .objects
            .get(&(String::new(), "namespaces".to_string()))
            .map(|m| {
                m.values()
                    .filter(|n| n["metadata"].get("deletionTimestamp").is_some())
                    .filter_map(|n| meta_str(n, "name").map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut progressed = false;
        for (key, ns, name, o) in &all {
            let deleting = o["metadata"].get("deletionTimestamp").is_some();
            // Dependents whose owners were all deleted here.
            if let Some(refs) = o["metadata"]["ownerReferences"].as_array() {
                let uids: Vec<&str> = refs.iter().filter_map(|r| r["uid"].as_str()).collect();
                let orphaned = !uids.is_empty()
                    && uids.iter().all(|u| st.deleted_uids.contains(*u) && !alive.contains(*u))
                    || uids.iter().any(|u| {
                        // Foreground deletion of an owner deletes its dependents first.
                        all.iter().any(|(_, _, _, owner)| {
                            meta_str(owner, "uid") == Some(*u)
                                && finalizers(owner).iter().any(|f| f == "foregroundDeletion")
                        })
                    });
                if orphaned && !deleting {
                    delete_object(st, key, ns, name, false);
                    progressed = true;
                    continue;
                }
            }
            if !ns.is_empty() && terminating_ns.contains(ns) && !deleting {
                delete_object(st, key, ns, name, false);
                progressed = true;
                continue;
            }
            if deleting && finalizers(o).iter().any(|f| f == "foregroundDeletion") {
                let uid = meta_str(o, "uid").unwrap_or_default();
                let dependents = all.iter().any(|(_, _, _, d)| owned_by(d, uid));
                if !dependents {
                    let mut updated = o.clone();
                    let rest: Vec<String> = finalizers(o)
                        .into_iter()
                        .filter(|f| f != "foregroundDeletion")
                        .collect();
                    updated["metadata"]["finalizers"] = json!(rest);
                    if rest.is_empty() {
                        finalize_removal(st, key, ns, name);
                    } else {
                        st.put(key, updated);
                    }
                    progressed = true;
                    continue;
                }
            }
            if key.0.is_empty() && key.1 == "namespaces" && deleting {
                let empty = all
                    .iter()
                    .all(|(k, ons, _, _)| ons != name || (k.0.is_empty() && k.1 == "namespaces"));
                if empty {
                    finalize_removal(st, key, ns, name);
                    progressed = true;
                }
            }
        }
        if !progressed {
            break;
        }
    }
}

pub fn get(store: &Store, t: &Target) -> ApiResult<Value> {
    let st = store.lock();
    st.get(&t.key(), &t.ns(), &t.name())
        .cloned()
        .map(|o| to_version(o, &t.rt, &t.version))
        .ok_or_else(|| t.not_found())
}

/// Query parameters of list and watch.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

impl ListParams {
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// Lists matching objects, sorted by namespace and name, paginated with an opaque continue token.
pub fn list(store: &Store, t: &Target, p: &ListParams) -> ApiResult<(Vec<Value>, Value)> {
    use base64::Engine;
    let st = store.lock();
    let (list_rv, start) = match &p.continue_token {
        Some(tok) if !tok.is_empty() => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(tok)
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            let v: Value =
                serde_json::from_slice(&raw).map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            let rv = v["rv"].as_u64().unwrap_or_default();
            if rv < st.compacted_rv {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            (
                rv,
                Some((
                    v["ns"].as_str().unwrap_or_default().to_string(),
                    v["name"].as_str().unwrap_or_default().to_string(),
                )),
            )
        }
        _ => (st.rv, None),
    };
    let ns_filter = if t.rt.namespaced { t.namespace.clone() } else { None };
    let mut items = Vec::new();
    let mut next = None;
    let mut remaining = 0usize;
    if let Some(objs) = st.objects_of(&t.key()) {
        for ((ons, oname), o) in objs {
            if let Some((sns, sname)) = &start
                && (ons, oname) <= (sns, sname)
            {
                continue;
            }
            if ns_filter.as_ref().is_some_and(|n| n != ons) || !p.matches(o) {
                continue;
            }
            if p.limit.is_some_and(|l| l > 0 && items.len() >= l) {
                if next.is_none() {
                    next = items.last().map(|last: &Value| {
                        (
                            meta_str(last, "namespace").unwrap_or_default().to_string(),
                            meta_str(last, "name").unwrap_or_default().to_string(),
                        )
                    });
                }
                remaining += 1;
                continue;
            }
            items.push(to_version(o.clone(), &t.rt, &t.version));
        }
    }
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some((ns, name)) = next {
        let tok = json!({"rv": list_rv, "ns": ns, "name": name}).to_string();
        meta["continue"] = Value::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tok));
        meta["remainingItemCount"] = json!(remaining);
    }
    Ok((items, meta))
}

pub fn create(store: &Store, t: &Target, body: Value, opts: &WriteOpts) -> ApiResult<Written> {
    let mut st = store.lock();
    commit(&mut st, t, body, None, opts)
}

pub fn update(store: &Store, t: &Target, body: Value, opts: &WriteOpts) -> ApiResult<Written> {
    let mut st = store.lock();
    let old = st.get(&t.key(), &t.ns(), &t.name()).cloned();
    match old {
        Some(old) => commit(&mut st, t, body, Some(&old), opts),
        // PUT creates for the kinds that allow it (Leases, Events, CRs...): the real server
        // allows create-on-update for most of what is served here.
        None if t.subresource.is_none() => {
            let mut body = body;
            if let Some(m) = body["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            if meta_str(&body, "resourceVersion").is_none() && t.rt.plural != "namespaces" {
                return commit(&mut st, t, body, None, opts);
            }
            Err(t.not_found())
        }
        None => Err(t.not_found()),
    }
}

/// Parses a request body as JSON, or YAML for apply patches.
pub fn parse_body(bytes: &[u8], yaml: bool) -> ApiResult<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return Ok(v);
    }
    if yaml {
        let text = std::str::from_utf8(bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
        return serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    Err(ApiError::bad_request(
        "the body of the request was in an unknown format",
    ))
}

pub fn patch(store: &Store, t: &Target, content_type: &str, body: &[u8], opts: &WriteOpts) -> ApiResult<Written> {
    let ct = content_type.split(';').next().unwrap_or_default().trim();
    let mut st = store.lock();
    let old = st
        .get(&t.key(), &t.ns(), &t.name())
        .cloned()
        .map(|o| to_version(o, &t.rt, &t.version));
    if ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor" {
        let applied = parse_body(body, true)?;
        let manager = opts.field_manager.clone().filter(|m| !m.is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            )
        })?;
        if applied["metadata"]["name"].as_str().is_some_and(|n| n != t.name()) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let mut applied = applied;
        // Apply through the main endpoint ignores status; through /status, everything else.
        if t.rt.status_subresource
            && let Some(m) = applied.as_object_mut()
        {
            if t.subresource.as_deref() == Some("status") {
                m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
                if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
                }
            } else {
                m.remove("status");
            }
        }
        let schema = t.rt.crd_version(&t.version).and_then(|v| v.schema.as_ref());
        let ts = now();
        let api_version = t.rt.api_version(&t.version);
        let req = apply::ApplyRequest {
            manager: &manager,
            force: opts.force,
            subresource: t.subresource.as_deref(),
            api_version: &api_version,
            now: &ts,
            shape: apply::Shape {
                schema,
                builtin: t.rt.crd.is_none(),
            },
        };
        return match old {
            Some(old) => {
                let mut merged = apply::apply(&old, &applied, &req)?;
                if let Some(rv) = meta_str(&applied, "resourceVersion") {
                    merged["metadata"]["resourceVersion"] = json!(rv);
                }
                commit(&mut st, t, merged, Some(&old), opts)
            }
            None if t.subresource.is_none() => {
                let skeleton = json!({
                    "apiVersion": api_version,
                    "kind": t.rt.kind,
                    "metadata": {"name": t.name()},
                });
                let merged = apply::apply(&skeleton, &applied, &req)?;
                commit(&mut st, t, merged, None, opts)
            }
            None => Err(t.not_found()),
        };
    }
    let Some(old) = old else { return Err(t.not_found()) };
    let patch_doc = parse_body(body, false)?;
    let mut target = old.clone();
    match ct {
        "application/merge-patch+json" => merge::merge_patch(&mut target, &patch_doc),
        "application/json-patch+json" => jsonpatch::json_patch(&mut target, &patch_doc)?,
        "application/strategic-merge-patch+json" => {
            if t.rt.crd.is_some() {
                return Err(ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (content type {ct})"
                )));
            }
            strategic::strategic_merge(&mut target, &patch_doc)?;
        }
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (content type {other})"
            )));
        }
    }
    // A patch that sets resourceVersion is a precondition; otherwise patches always apply.
    let wanted_rv = patch_doc["metadata"]["resourceVersion"].as_str().map(String::from);
    match wanted_rv {
        Some(rv) => target["metadata"]["resourceVersion"] = json!(rv),
        None => target["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone(),
    }
    commit(&mut st, t, target, Some(&old), opts)
}

/// `DeleteOptions` that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub fn delete(store: &Store, t: &Target, opts: &DeleteOpts) -> ApiResult<Value> {
    let mut st = store.lock();
    let key = t.key();
    let (ns, name) = (t.ns(), t.name());
    let Some(old) = st.get(&key, &ns, &name).cloned() else {
        return Err(t.not_found());
    };
    if opts
        .precondition_uid
        .as_deref()
        .is_some_and(|u| Some(u) != meta_str(&old, "uid"))
    {
        return Err(ApiError::conflict_msg(
            &t.rt.group,
            &t.rt.plural,
            &name,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {}, UID in object meta: {}",
                crate::status::qualified(&t.rt.plural, &t.rt.group),
                opts.precondition_uid.clone().unwrap_or_default(),
                meta_str(&old, "uid").unwrap_or_default()
            ),
        ));
    }
    if opts
        .precondition_rv
        .as_deref()
        .is_some_and(|r| Some(r) != meta_str(&old, "resourceVersion"))
    {
        return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, &name));
    }
    if opts.dry_run {
        return Ok(to_version(old, &t.rt, &t.version));
    }
    let policy = opts.propagation.as_deref().unwrap_or("Background");
    if policy == "Orphan" {
        let uid = meta_str(&old, "uid").unwrap_or_default().to_string();
        let dependents: Vec<(TypeKey, (String, String), Value)> = st
            .objects
            .iter()
            .flat_map(|(k, m)| {
                m.iter()
                    .filter(|(_, o)| owned_by(o, &uid))
                    .map(move |(ok, o)| (k.clone(), ok.clone(), o.clone()))
            })
            .collect();
        for (k, _, mut o) in dependents {
            if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"].as_str() != Some(uid.as_str()));
            }
            st.put(&k, o);
        }
    }
    let result = delete_object(&mut st, &key, &ns, &name, policy == "Foreground").unwrap_or(old);
    collect_garbage(&mut st);
    Ok(to_version(result, &t.rt, &t.version))
}

pub fn delete_collection(store: &Store, t: &Target, p: &ListParams, opts: &DeleteOpts) -> ApiResult<Vec<Value>> {
    let (items, _) = list(
        store,
        t,
        &ListParams {
            limit: None,
            continue_token: None,
            ..p.clone()
        },
    )?;
    let mut out = Vec::new();
    for item in items {
        let mut one = t.clone();
        one.namespace = meta_str(&item, "namespace").map(String::from);
        one.name = meta_str(&item, "name").map(String::from);
        match delete(store, &one, opts) {
            Ok(o) => out.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn get_path<'v>(obj: &'v Value, path: &str) -> Option<&'v Value> {
    crd::lookup(obj, path)
}

fn set_path(obj: &mut Value, path: &str, v: Value) {
    let mut cur = obj;
    for seg in path.split('.') {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = &mut cur[seg];
    }
    *cur = v;
}

/// The `autoscaling/v1 Scale` view of an object.
pub fn scale_of(t: &Target, obj: &Value) -> ApiResult<Value> {
    let spec = t.rt.scale.clone().ok_or_else(|| t.not_found())?;
    let selector = match &spec.label_selector {
        Some(p) => get_path(obj, p).and_then(Value::as_str).unwrap_or_default().to_string(),
        None => obj["spec"]["selector"]["matchLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
    };
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": get_path(obj, &spec.spec_replicas).cloned().unwrap_or(json!(0))},
        "status": {"replicas": get_path(obj, &spec.status_replicas).cloned().unwrap_or(json!(0)), "selector": selector},
    }))
}

/// Writes `spec.replicas` from a Scale (PUT, or PATCH applied to the Scale view).
pub fn write_scale(
    store: &Store,
    t: &Target,
    content_type: Option<&str>,
    body: &[u8],
    opts: &WriteOpts,
) -> ApiResult<Value> {
    let spec = t.rt.scale.clone().ok_or_else(|| t.not_found())?;
    let mut main = t.clone();
    main.subresource = None;
    let current = get(store, &main)?;
    let mut scale = scale_of(t, &current)?;
    let body_v = parse_body(body, true)?;
    match content_type.map(|c| c.split(';').next().unwrap_or_default().trim()) {
        None => scale = body_v,
        Some("application/json-patch+json") => jsonpatch::json_patch(&mut scale, &body_v)?,
        Some(_) => merge::merge_patch(&mut scale, &body_v),
    }
    let mut updated = current.clone();
    set_path(&mut updated, &spec.spec_replicas, scale["spec"]["replicas"].clone());
    if let Some(rv) = meta_str(&scale, "resourceVersion") {
        updated["metadata"]["resourceVersion"] = json!(rv);
    }
    let written = update(store, &main, updated, opts)?;
    scale_of(t, &written.object)
}

/// Creates the namespaces every cluster has.
pub fn seed(store: &Store) {
    let mut st = store.lock();
    let Some(rt) = st.types.get(&(String::new(), "namespaces".to_string())).cloned() else {
        return;
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let t = Target {
            rt: rt.clone(),
            version: "v1".into(),
            namespace: None,
            name: None,
            subresource: None,
        };
        let _ = commit(
            &mut st,
            &t,
            json!({"metadata": {"name": ns}}),
            None,
            &WriteOpts::default(),
        );
    }
}
