//! The on-disk cache of compiled components, keyed by the `.wasm`'s SHA-256 and
//! the engine's compatibility hash (wasmtime version and settings): a warm
//! start maps the compiled code instead of compiling (milliseconds, not seconds).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn entry(engine: &Engine, dir: &Path, wasm: &[u8]) -> (PathBuf, String) {
    let hash = hex(&Sha256::digest(wasm));
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let name = format!(
        "{hash}-wasmtime{}-{:016x}.cwasm",
        wasmtime_version(),
        h.finish()
    );
    (dir.join(name), hash)
}

fn wasmtime_version() -> &'static str {
    // Cargo.toml pins the major version; the compatibility hash covers the rest.
    "48"
}

/// The compiled component and the hex SHA-256 of `wasm`.
pub fn load_or_compile(
    engine: &Engine,
    dir: &Path,
    wasm: &[u8],
) -> anyhow::Result<(Component, String)> {
    let (path, hash) = entry(engine, dir, wasm);
    if path.exists() {
        // SAFETY: the file was written by `Component::serialize` of an engine
        // with the same compatibility hash (it is in the file name), and
        // wasmtime checks the header again before mapping it.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok((c, hash)),
            Err(e) => tracing::warn!(
                "compile cache entry {} is unusable ({e}); recompiling",
                path.display()
            ),
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Err(e) = store(&path, &component) {
        tracing::warn!(
            "cannot write the compile cache at {}: {e:#}",
            path.display()
        );
    }
    Ok((component, hash))
}

fn store(path: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = component.serialize()?;
    // Write then rename: a concurrent reader sees the whole file or none.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
