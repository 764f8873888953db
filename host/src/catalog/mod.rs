//! The live function table: discovery of function folders, loading their
//! components, and hot reload.
//!
//! A folder is `functions/<name>/` with a `function.toml` and one `.wasm`
//! component. Folders load independently: one that fails is reported and the
//! others keep serving. Requests in flight hold an `Arc` to the entry they
//! started with, so a reload never cuts them off.

pub mod routes;
mod watch;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::config::{FunctionFile, Trigger};
use crate::runtime::{self, Component, Runtime};
use routes::{Route, RouteTemplate, Router};

pub use watch::watch;

/// One function, ready to invoke.
pub struct FunctionEntry {
    pub name: String,
    /// The folder it came from (its name under the functions directory).
    pub folder: String,
    pub trigger: Trigger,
    pub component: Arc<Component>,
}

/// A snapshot of every loaded function.
#[derive(Default)]
pub struct FunctionTable {
    /// Sorted by name.
    pub functions: Vec<Arc<FunctionEntry>>,
    pub router: Router,
}

impl FunctionTable {
    /// The function called `name` (case-insensitive) whose trigger passes `kind`.
    pub fn find(&self, name: &str, kind: impl Fn(&Trigger) -> bool) -> Option<Arc<FunctionEntry>> {
        self.functions
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name) && kind(&f.trigger))
            .cloned()
    }
}

/// What a (re)scan changed, for the console.
pub enum Change {
    Loaded {
        folder: String,
        functions: Vec<Arc<FunctionEntry>>,
        replaced: bool,
    },
    Unloaded {
        folder: String,
    },
    Failed {
        folder: String,
        error: String,
    },
}

/// Identity of a folder's contents: function.toml's bytes and each `.wasm`'s
/// name, size and modification time. Equal fingerprints are not reloaded.
type Fingerprint = u64;

struct Folder {
    fingerprint: Fingerprint,
    functions: Vec<Arc<FunctionEntry>>,
    routes: Vec<Route>,
}

#[derive(Default)]
struct Loaded {
    /// Loaded folders by name.
    folders: BTreeMap<String, Folder>,
    /// Folders whose current contents failed, so the same error is not repeated.
    failed: BTreeMap<String, Fingerprint>,
}

/// The catalog of function folders under one directory.
pub struct Catalog {
    dir: PathBuf,
    runtime: Arc<Runtime>,
    table: RwLock<Arc<FunctionTable>>,
    loaded: tokio::sync::Mutex<Loaded>,
}

impl Catalog {
    pub fn new(dir: PathBuf, runtime: Arc<Runtime>) -> Arc<Catalog> {
        Arc::new(Catalog {
            dir,
            runtime,
            table: RwLock::new(Arc::default()),
            loaded: tokio::sync::Mutex::new(Loaded::default()),
        })
    }

    /// The functions directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current table; cheap (an `Arc` clone).
    pub fn table(&self) -> Arc<FunctionTable> {
        self.table.read().expect("table lock poisoned").clone()
    }

    /// Bring the table in line with the folders on disk: load new and changed
    /// folders, unload removed ones. Returns what changed.
    pub async fn sync(&self) -> Vec<Change> {
        let mut loaded = self.loaded.lock().await;
        let on_disk = scan(&self.dir);
        let mut changes = Vec::new();

        let gone: Vec<String> = loaded
            .folders
            .keys()
            .filter(|name| !on_disk.contains_key(*name))
            .cloned()
            .collect();
        for folder in gone {
            loaded.folders.remove(&folder);
            changes.push(Change::Unloaded { folder });
        }
        loaded.failed.retain(|name, _| on_disk.contains_key(name));

        let stale: Vec<(String, PathBuf, Fingerprint)> = on_disk
            .into_iter()
            .filter(|(name, (_, fp))| {
                loaded.folders.get(name).map(|f| f.fingerprint) != Some(*fp)
                    && loaded.failed.get(name) != Some(fp)
            })
            .map(|(name, (path, fp))| (name, path, fp))
            .collect();

        // Compile in parallel on blocking threads: a cold compile takes a while.
        let jobs = stale.into_iter().map(|(name, path, fingerprint)| {
            let runtime = self.runtime.clone();
            let folder_name = name.clone();
            async move {
                let result =
                    tokio::task::spawn_blocking(move || load_folder(&runtime, &folder_name, &path))
                        .await
                        .unwrap_or_else(|e| Err(format!("loading panicked: {e}")));
                (name, fingerprint, result)
            }
        });
        for (name, fingerprint, result) in futures::future::join_all(jobs).await {
            let result = result.and_then(|(functions, routes)| {
                check_conflicts(&loaded.folders, &name, &functions, &routes)?;
                Ok(Folder {
                    fingerprint,
                    functions,
                    routes,
                })
            });
            match result {
                Ok(folder) => {
                    loaded.failed.remove(&name);
                    let functions = folder.functions.clone();
                    let replaced = loaded.folders.insert(name.clone(), folder).is_some();
                    changes.push(Change::Loaded {
                        folder: name,
                        functions,
                        replaced,
                    });
                }
                Err(error) => {
                    // A broken replacement keeps the working version serving.
                    loaded.failed.insert(name.clone(), fingerprint);
                    changes.push(Change::Failed {
                        folder: name,
                        error,
                    });
                }
            }
        }

        if !changes.is_empty() {
            let table = build_table(&loaded.folders);
            *self.table.write().expect("table lock poisoned") = Arc::new(table);
        }
        changes
    }
}

fn build_table(folders: &BTreeMap<String, Folder>) -> FunctionTable {
    let mut functions: Vec<Arc<FunctionEntry>> = folders
        .values()
        .flat_map(|f| f.functions.iter().cloned())
        .collect();
    functions.sort_by(|a, b| {
        a.name
            .to_ascii_lowercase()
            .cmp(&b.name.to_ascii_lowercase())
    });
    let routes = folders
        .values()
        .flat_map(|f| f.routes.iter().cloned())
        .collect();
    FunctionTable {
        functions,
        router: Router::new(routes),
    }
}

/// Folders under `dir` that hold a function.toml, with their fingerprints.
fn scan(dir: &Path) -> BTreeMap<String, (PathBuf, Fingerprint)> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.join("function.toml").is_file() {
            continue;
        }
        out.insert(name, (path.clone(), fingerprint(&path)));
    }
    out
}

fn fingerprint(folder: &Path) -> Fingerprint {
    let mut h = DefaultHasher::new();
    std::fs::read(folder.join("function.toml"))
        .ok()
        .hash(&mut h);
    let mut wasm: Vec<(String, u64, Option<std::time::SystemTime>)> = wasm_files(folder)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect();
    wasm.sort();
    wasm.hash(&mut h);
    h.finish()
}

fn wasm_files(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .collect();
    files.sort();
    files
}

/// Load one folder: function.toml, its component, the exports its triggers need.
fn load_folder(
    runtime: &Runtime,
    folder: &str,
    path: &Path,
) -> Result<(Vec<Arc<FunctionEntry>>, Vec<Route>), String> {
    let toml_path = path.join("function.toml");
    let file = FunctionFile::load(&toml_path).map_err(|e| e.to_string())?;
    let wasm = match &file.component {
        Some(name) => {
            let p = path.join(name);
            if !p.is_file() {
                return Err(format!(
                    "{}: component = \"{name}\" but {} does not exist; build it with `host build`",
                    toml_path.display(),
                    p.display()
                ));
            }
            p
        }
        None => {
            let files = wasm_files(path);
            match files.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(format!(
                        "{} has no .wasm component; build it with `host build` (or `host start --build`)",
                        path.display()
                    ));
                }
                _ => {
                    return Err(format!(
                        "{} has {} .wasm files; name the one to load with component = \"...\" in function.toml",
                        path.display(),
                        files.len()
                    ));
                }
            }
        }
    };
    let component = runtime
        .load(&wasm)
        .map_err(|e| e.to_string())?
        .with_allowed_hosts(file.allowed_outbound_hosts.clone());
    let component = Arc::new(component);

    let mut functions = Vec::new();
    let mut routes = Vec::new();
    for def in file.functions {
        let at = format!("{} line {}", toml_path.display(), def.line);
        match &def.trigger {
            Trigger::Http { methods, route, .. } => {
                component
                    .require_export(
                        runtime::HTTP_INTERFACE,
                        &format!("httpTrigger function '{}'", def.name),
                    )
                    .map_err(|e| e.to_string())?;
                let template = RouteTemplate::parse(route).map_err(|e| format!("{at}: {e}"))?;
                if let Some(first) = template.first_literal()
                    && ["admin", "runtime"]
                        .iter()
                        .any(|r| first.eq_ignore_ascii_case(r))
                {
                    return Err(format!(
                        "{at}: route '{route}' starts with '{first}', which the host reserves for its own APIs"
                    ));
                }
                let entry = Arc::new(FunctionEntry {
                    name: def.name.clone(),
                    folder: folder.to_string(),
                    trigger: def.trigger.clone(),
                    component: component.clone(),
                });
                routes.push(Route {
                    template,
                    methods: methods.clone(),
                    function: entry.clone(),
                });
                functions.push(entry);
            }
            Trigger::Orchestration
            | Trigger::Activity
            | Trigger::Entity
            | Trigger::Queue { .. }
            | Trigger::Blob { .. }
            | Trigger::Timer { .. } => {
                let interface = match def.trigger {
                    Trigger::Orchestration => runtime::ORCHESTRATOR_INTERFACE,
                    Trigger::Activity => runtime::ACTIVITY_INTERFACE,
                    Trigger::Entity => runtime::ENTITY_INTERFACE,
                    Trigger::Queue { .. } => runtime::QUEUE_INTERFACE,
                    Trigger::Blob { .. } => runtime::BLOB_INTERFACE,
                    _ => runtime::TIMER_INTERFACE,
                };
                component
                    .require_export(
                        interface,
                        &format!("{} function '{}'", def.trigger.type_name(), def.name),
                    )
                    .map_err(|e| e.to_string())?;
                functions.push(Arc::new(FunctionEntry {
                    name: def.name.clone(),
                    folder: folder.to_string(),
                    trigger: def.trigger.clone(),
                    component: component.clone(),
                }));
            }
        }
    }
    Ok((functions, routes))
}

/// A folder may not reuse a function name or an HTTP route and method of another folder.
fn check_conflicts(
    folders: &BTreeMap<String, Folder>,
    name: &str,
    functions: &[Arc<FunctionEntry>],
    routes: &[Route],
) -> Result<(), String> {
    // Routes within the folder itself.
    for (i, a) in routes.iter().enumerate() {
        if let Some(b) = routes[..i].iter().find(|b| b.clashes_with(a)) {
            return Err(clash_message(a, b));
        }
    }
    for (other_name, other) in folders.iter().filter(|(n, _)| n.as_str() != name) {
        for f in functions {
            if other
                .functions
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&f.name))
            {
                return Err(format!(
                    "function '{}' is already defined by folder '{other_name}'; function names must be unique",
                    f.name
                ));
            }
        }
        for r in routes {
            if let Some(o) = other.routes.iter().find(|o| o.clashes_with(r)) {
                return Err(clash_message(r, o));
            }
        }
    }
    Ok(())
}

fn clash_message(a: &Route, b: &Route) -> String {
    let methods = |r: &Route| {
        r.methods
            .as_ref()
            .map_or("all methods".to_string(), |m| m.join(","))
    };
    format!(
        "function '{}' (route '{}', {}) clashes with function '{}' of folder '{}' (route '{}', {}): \
         give one of them another route or other methods",
        a.function.name,
        a.template,
        methods(a),
        b.function.name,
        b.function.folder,
        b.template,
        methods(b)
    )
}
