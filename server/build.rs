//! Embeds the official Socket.IO client bundle (npm package `socket.io-client`, pinned in
//! `client-bundle/package.json`) so the server can serve `<path>/socket.io.js` like Node's
//! `serveClient`. The package is installed with `npm ci` at build time and never committed.
//!
//! The same `npm ci` installs `@socket.io/admin-ui`, whose `ui/dist` (the admin UI's static files,
//! source maps left out) is embedded too and served at `/admin/` when `--admin-ui` is on. Its
//! `index.html` loads the Roboto font and the Material Design icon font from CDNs: the first link
//! is taken out (the UI falls back to the system font), the second points to the icon font of the
//! npm package `@mdi/font` (its minified CSS and woff2 font, embedded under `/admin/mdi/`), so the
//! page asks nothing of the network.
//!
//! When npm is missing or fails, the build goes on with an empty bundle and a warning.
//!
//! It also records which commit is built (`SWITCHBOARD_COMMIT` for the crate: the variable of that
//! name if set, as a Docker build without `.git` passes it, else `git rev-parse`, else `unknown`),
//! so `--version`, the start-up log and `switchboard_build_info` tell a rollout's pods apart.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files served, all from `socket.io-client/dist`.
const FILES: [&str; 6] = [
    "socket.io.js",
    "socket.io.js.map",
    "socket.io.min.js",
    "socket.io.min.js.map",
    "socket.io.esm.min.js",
    "socket.io.esm.min.js.map",
];

const FIX: &str = "run `cd server/client-bundle && npm ci` (Node.js and npm needed), then rebuild";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    record_commit(&manifest_dir);
    let bundle_dir = manifest_dir.join("client-bundle");
    let package_dir = bundle_dir.join("node_modules").join("socket.io-client");
    let dist = package_dir.join("dist");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", bundle_dir.join("package.json").display());
    println!("cargo:rerun-if-changed={}", bundle_dir.join("package-lock.json").display());
    println!("cargo:rerun-if-changed={}", dist.display());

    let pinned = fs::read_to_string(bundle_dir.join("package.json"))
        .ok()
        .and_then(|json| json_string_after(&json, "\"socket.io-client\""));
    let installed = installed_version(&package_dir);
    // Only an exact pin (as package.json has) can be compared with the installed version.
    let exact = pinned.as_deref().is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()));
    let stale = exact && installed != pinned;
    let admin_package = bundle_dir.join("node_modules").join("@socket.io").join("admin-ui");
    let admin_dist = admin_package.join("ui").join("dist");
    println!("cargo:rerun-if-changed={}", admin_dist.display());
    let admin_pinned = fs::read_to_string(bundle_dir.join("package.json"))
        .ok()
        .and_then(|json| json_string_after(&json, "\"@socket.io/admin-ui\""));
    let admin_stale = admin_pinned.is_some() && installed_version(&admin_package) != admin_pinned;
    let mdi_package = bundle_dir.join("node_modules").join("@mdi").join("font");
    let mdi_missing = !mdi_package.join(MDI_FILES[0]).is_file();
    if !dist.join("socket.io.js").is_file()
        || stale
        || admin_stale
        || !admin_dist.join("index.html").is_file()
        || mdi_missing
    {
        npm_ci(&bundle_dir);
    }

    let version = installed_version(&package_dir).unwrap_or_default();
    let mut files = Vec::new();
    for name in FILES {
        let path = dist.join(name);
        if path.is_file() {
            files.push((name, path));
        }
    }
    if files.is_empty() {
        println!(
            "cargo:warning=the Socket.IO client bundle is missing, so the server won't serve <path>/socket.io.js: {FIX}"
        );
    }

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    write_embedded(&out_dir, "client_bundle.rs", "socket.io-client", "`dist/`", &version, &files);
    embed_admin_ui(&admin_package, &mdi_package, &out_dir);
}

/// The files of `@mdi/font` the admin UI uses: the stylesheet, and the one font format every
/// browser it runs in reads (the stylesheet lists it before the older ones).
const MDI_FILES: [&str; 2] = ["css/materialdesignicons.min.css", "fonts/materialdesignicons-webfont.woff2"];
/// Where the page finds that stylesheet, relative to `/admin/`.
const MDI_STYLESHEET: &str = "mdi/css/materialdesignicons.min.css";

/// Writes `admin_ui.rs` (version and files of `@socket.io/admin-ui`'s `ui/dist`, maps left out,
/// `index.html` without its CDN links; the icon font of `mdi_dir` under `mdi/`) to `out_dir`; see
/// the module docs.
fn embed_admin_ui(package_dir: &Path, mdi_dir: &Path, out_dir: &Path) {
    let dist = package_dir.join("ui").join("dist");
    let mut files = Vec::new();
    collect_files(&dist, &dist, &mut files);
    files.retain(|(name, _)| !name.ends_with(".map"));
    let icons = MDI_FILES.iter().all(|name| mdi_dir.join(name).is_file());
    if icons {
        files.extend(MDI_FILES.iter().map(|name| (format!("mdi/{name}"), mdi_dir.join(name))));
    } else {
        println!("cargo:warning=the icon font (@mdi/font) is missing, so the admin UI shows no icons: {FIX}");
    }
    files.sort();
    let index = out_dir.join("admin-ui-index.html");
    let mut found_index = false;
    for (name, path) in &mut files {
        if name == "index.html" {
            let html = fs::read_to_string(&*path).unwrap_or_default();
            let offline: String = html
                .split_inclusive('>')
                .filter_map(|tag| match tag.starts_with("<link") && tag.contains("href=\"https://") {
                    false => Some(tag.to_owned()),
                    true if icons && tag.contains("materialdesignicons") => {
                        Some(format!("<link rel=\"stylesheet\" href=\"{MDI_STYLESHEET}\">"))
                    }
                    true => None,
                })
                .collect();
            if fs::write(&index, offline).is_ok() {
                *path = index.clone();
                found_index = true;
            }
        }
    }
    if !found_index {
        files.clear();
        println!(
            "cargo:warning=the admin UI (@socket.io/admin-ui) is missing, so --admin-ui won't serve /admin/: {FIX}"
        );
    }
    let version = installed_version(package_dir).filter(|_| found_index).unwrap_or_default();
    write_embedded(
        out_dir,
        "admin_ui.rs",
        "@socket.io/admin-ui",
        "`ui/dist/` (`/` separated)",
        &version,
        &files,
    );
}

/// Writes `file` to `out_dir`: the `VERSION` of the npm `package` and the `FILES` (name in
/// `dir`, bytes) the crate `include!`s. Without it the crate can't compile, so a failure stops
/// the build and says why.
fn write_embedded<N: std::fmt::Debug>(
    out_dir: &Path,
    file: &str,
    package: &str,
    dir: &str,
    version: &str,
    files: &[(N, PathBuf)],
) {
    let mut out = format!("// Generated by build.rs: the embedded {package}.\n\n");
    let _ = writeln!(out, "/// Version of the embedded `{package}` (empty when none is embedded).");
    let _ = writeln!(out, "const VERSION: &str = {version:?};\n");
    let _ = writeln!(out, "/// Embedded files: name in {dir}, bytes.");
    let _ = writeln!(out, "static FILES: &[(&str, &[u8])] = &[");
    for (name, path) in files {
        let absolute = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let _ = writeln!(out, "    ({name:?}, include_bytes!({:?})),", absolute.display().to_string());
    }
    out.push_str("];\n");
    if let Err(err) = fs::write(out_dir.join(file), out) {
        println!("cargo:warning=cannot write {file} to OUT_DIR: {err}");
        std::process::exit(1);
    }
}

/// Every file under `dir`, as (path relative to `root` with `/`, path).
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            out.push((name.join("/"), path));
        }
    }
}

/// Runs `npm ci` in `dir`, warning (not failing) when it can't.
fn npm_ci(dir: &Path) {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    // Output is captured: a build script's stdout is read by cargo.
    match Command::new(npm).args(["ci", "--no-audit", "--no-fund"]).current_dir(dir).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            println!("cargo:warning=`npm ci` in {} failed ({}): {last}", dir.display(), output.status);
            println!("cargo:warning=to embed the Socket.IO client bundle, {FIX}");
        }
        Err(err) => {
            println!("cargo:warning=cannot run `{npm} ci` in {}: {err}", dir.display());
            println!("cargo:warning=to embed the Socket.IO client bundle, {FIX}");
        }
    }
}

/// The `version` of the installed package, if any.
fn installed_version(package_dir: &Path) -> Option<String> {
    let json = fs::read_to_string(package_dir.join("package.json")).ok()?;
    json_string_after(&json, "\"version\"")
}

/// The string value that follows the first `key` in `json` (`key: "value"`): enough for the
/// flat fields read here, without a JSON parser.
fn json_string_after(json: &str, key: &str) -> Option<String> {
    let rest = &json[json.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let value = &rest[..rest.find('"')?];
    Some(value.to_owned())
}

/// Sets `SWITCHBOARD_COMMIT` for the crate (see the module docs), and reruns when HEAD moves.
fn record_commit(dir: &Path) {
    println!("cargo:rerun-if-env-changed=SWITCHBOARD_COMMIT");
    let git = |args: &[&str]| {
        let output = Command::new("git").args(args).current_dir(dir).output().ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // HEAD names the branch; the branch's ref (loose or packed) moves with each commit.
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/packed-refs");
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]).unwrap_or(git_dir);
            println!("cargo:rerun-if-changed={common}/{reference}");
        }
    }
    let commit = env::var("SWITCHBOARD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SWITCHBOARD_COMMIT={commit}");
}
