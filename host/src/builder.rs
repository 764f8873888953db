//! `host build`: compile the function crates of a functions directory to
//! wasm32-wasip2 components and put each `.wasm` in its folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The WASI target every function component is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// A function folder with a Cargo crate in it.
#[derive(Debug)]
struct Crate {
    folder: PathBuf,
    package: String,
    /// The artifact's name: `[lib] name`, or the package name with '-' as '_'.
    lib: String,
    /// function.toml's `component = "..."`, if any.
    component: Option<String>,
}

/// Build every crate under `functions_dir`; returns the components written.
/// Folders without a Cargo.toml (a deployed `.wasm`) are left alone.
pub fn build(functions_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let crates = find_crates(functions_dir)?;
    if crates.is_empty() {
        return Ok(Vec::new());
    }
    ensure_target()?;
    let workspace = workspace_root(functions_dir)?;
    // A target directory of its own: `cargo test` or `cargo run` of the host
    // can hold the main one's lock while this runs.
    let target_dir = workspace.join("target").join("functions");
    let mut cmd = Command::new(cargo());
    cmd.current_dir(functions_dir)
        .args(["build", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        // Small components compile faster on first load: no debug info.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    for c in &crates {
        cmd.args(["-p", &c.package]);
    }
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!(
            "building the function crates in {} failed (cargo's errors are above)",
            functions_dir.display()
        );
    }
    let mut written = Vec::new();
    for c in &crates {
        let built = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", c.lib));
        let dest = c.folder.join(
            c.component
                .clone()
                .unwrap_or_else(|| format!("{}.wasm", c.lib)),
        );
        let bytes =
            std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
        // Unchanged components are not rewritten: a running host would reload them.
        if std::fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
            let tmp = dest.with_extension("wasm.tmp");
            std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &dest).with_context(|| format!("writing {}", dest.display()))?;
        }
        written.push(dest);
    }
    Ok(written)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn find_crates(dir: &Path) -> anyhow::Result<Vec<Crate>> {
    let mut crates = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries.flatten() {
        let folder = entry.path();
        let manifest = folder.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
        let Some(package) = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
        else {
            continue;
        };
        let lib = doc
            .get("lib")
            .and_then(|l| l.get("name"))
            .and_then(|n| n.as_str())
            .map_or_else(|| package.replace('-', "_"), str::to_string);
        let component = std::fs::read_to_string(folder.join("function.toml"))
            .ok()
            .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
            .and_then(|t| {
                t.get("component")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            });
        crates.push(Crate {
            folder,
            package: package.to_string(),
            lib,
            component,
        });
    }
    crates.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(crates)
}

fn workspace_root(dir: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(cargo())
        .current_dir(dir)
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .output()
        .context("running cargo locate-project")?;
    if !out.status.success() {
        bail!(
            "{} is not inside a Cargo workspace: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let manifest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(manifest.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// Install the wasm32-wasip2 target through rustup when it is missing.
fn ensure_target() -> anyhow::Result<()> {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    if let Ok(out) = sysroot {
        let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if root.join("lib/rustlib").join(TARGET).exists() {
            return Ok(());
        }
    }
    tracing::info!(target: "console", "Installing the {TARGET} target (rustup target add {TARGET})...");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => bail!(
            "the {TARGET} target is missing and rustup could not add it: run `rustup target add {TARGET}`"
        ),
    }
}
