//! `cargo xtask profile ID...`: where a benchmark's guest instructions go,
//! per kernel function; user space is counted as one bucket.
//!
//! The VM boots with QEMU's icount and a TCG plugin of ours
//! (`xtask/profile/rosetta_profile.c`) that counts the instructions of
//! every translated block executed between two marker instructions. The
//! bench binary runs each benchmark's loop (`ROSETTA_PROBE=<id>:<count>`,
//! with `ROSETTA_PROFILE` set) between the markers, one window per id, all
//! in the same boot; the kernel's `System.map` and the modules' `.ko`
//! symbols, placed where the guest's `/proc/modules` says, turn the block
//! addresses into functions. The report gives, per window, the
//! instructions per round trip of every function, and, for each pair of
//! ids (the first and second, the third and fourth, ...), their
//! difference: the way to find what a Rust module executes that its C twin
//! does not (`cargo xtask profile raw/raw/single/16 c-raw/raw/single/16`).
//!
//! The plugin is built with gcc against `qemu-plugin.h` of the installed
//! QEMU's own Debian source package (its plugin API version must match),
//! downloaded once into the tools cache.

use crate::util::{cache_dir, output, root, run, step, Hasher};
use crate::vm;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PLUGIN_SOURCE: &str = "xtask/profile/rosetta_profile.c";

/// How many of the costliest functions a window's table shows.
const TOP: usize = 40;

pub fn run_profile(ids: &[String], count: u64) -> Result<i32> {
    if ids.is_empty() {
        bail!("name the benchmarks to profile, e.g. raw/raw/single/16 c-raw/raw/single/16 (`ROSETTA_PROBE=list` on the bench binary lists them)");
    }
    let plugin = ensure_plugin()?;
    let kernel = crate::kmod::build_modules(crate::kernel::Flavour::Normal)?;
    step("compiling the benches (cargo bench --no-run)");
    let exe = crate::bench::bench_binary()?;
    let dir = root().join("target/rosetta/profile");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let counts = dir.join("blocks.txt");
    let mut script = String::from("set -e\n");
    for id in ids {
        script += &format!(
            "echo '==> profiling {id}: {count} round trips'\n\
             ROSETTA_PROFILE=1 ROSETTA_PROBE={}:{count} {}\n",
            vm::sh_quote(id),
            vm::sh_quote(&exe.to_string_lossy())
        );
    }
    // Where each module's text is (the kernel has no kallsyms).
    script += &format!(
        "cat /proc/modules > {}\n",
        vm::sh_quote(&dir.join("modules").to_string_lossy())
    );
    step(format!(
        "profiling {} in the VM (icount and the counting plugin: a few minutes)",
        ids.join(", ")
    ));
    let rc = vm::run(&vm::VmRun {
        kernel: &kernel,
        modules: vm::all_kmods().map(|m| m.0.to_string()).collect(),
        cmd: vec!["sh".into(), "-c".into(), script],
        timeout: Duration::from_secs(1800),
        cpus: 1,
        rw_dirs: vec![dir.clone()],
        verbose: false,
        icount: true,
        plugin: Some(format!("{},out={}", plugin.display(), counts.display())),
    })?;
    if rc != 0 {
        bail!("the profile run failed in the VM (exit status {rc})");
    }
    let symbols = Symbols::read(&kernel.tree.join("System.map"), &dir.join("modules"))?;
    let windows = windows(&std::fs::read_to_string(&counts)?, &symbols)?;
    if windows.len() != ids.len() {
        bail!(
            "the plugin saw {} windows for {} benchmarks: did a probe fail?",
            windows.len(),
            ids.len()
        );
    }
    let mut report = String::new();
    let mut json_windows = Vec::new();
    for (id, functions) in ids.iter().zip(&windows) {
        let per_rt = |n: u64| n as f64 / count as f64;
        let total: u64 = functions.values().sum();
        let _ = writeln!(
            report,
            "\n{id}: {:.1} guest instructions per round trip ({count} round trips)\n",
            per_rt(total)
        );
        let mut sorted: Vec<_> = functions.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(a.1));
        for (name, n) in sorted.iter().take(TOP) {
            let _ = writeln!(report, "{:>9.1}  {name}", per_rt(**n));
        }
        json_windows.push(json!({
            "id": id,
            "round_trips": count,
            "instructions_per_rt": per_rt(total),
            "functions": sorted.iter().map(|(name, n)| json!([name, per_rt(**n)])).collect::<Vec<_>>(),
        }));
    }
    // Pairs (the 1st and 2nd id, the 3rd and 4th, ...): their difference.
    if windows.len() % 2 == 0 {
        for (pair, w) in ids.chunks(2).zip(windows.chunks(2)) {
            report += &difference(&pair[0], &pair[1], &w[0], &w[1], count);
        }
    }
    print!("{report}");
    std::fs::write(dir.join("report.txt"), &report)?;
    std::fs::write(
        dir.join("profile.json"),
        serde_json::to_string_pretty(&json!({ "windows": json_windows }))? + "\n",
    )?;
    step(format!(
        "wrote {0}/report.txt and {0}/profile.json",
        dir.display()
    ));
    Ok(0)
}

/// The report's table of `a` minus `b`, per round trip: the functions
/// that differ by at least half an instruction, the largest first.
fn difference(
    id_a: &str,
    id_b: &str,
    a: &BTreeMap<String, u64>,
    b: &BTreeMap<String, u64>,
    count: u64,
) -> String {
    let per_rt = |n: u64| n as f64 / count as f64;
    let mut out = format!(
        "\n{id_a} minus {id_b}, per round trip (functions that differ by at least 0.5):\n\n{:>9} {:>9} {:>9}  function\n",
        "diff", "a", "b"
    );
    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut diffs: Vec<(f64, f64, f64, &String)> = names
        .into_iter()
        .map(|name| {
            let x = per_rt(*a.get(name).unwrap_or(&0));
            let y = per_rt(*b.get(name).unwrap_or(&0));
            (x - y, x, y, name)
        })
        .filter(|d| d.0.abs() >= 0.5)
        .collect();
    diffs.sort_by(|p, q| q.0.abs().total_cmp(&p.0.abs()));
    for (d, x, y, name) in diffs {
        let _ = writeln!(out, "{d:>+9.1} {x:>9.1} {y:>9.1}  {name}");
    }
    let (ta, tb) = (per_rt(a.values().sum()), per_rt(b.values().sum()));
    let _ = writeln!(
        out,
        "{:>+9.1} {ta:>9.1} {tb:>9.1}  (total: {:.4}×)",
        ta - tb,
        ta / tb
    );
    out
}

/// The guest's symbols, sorted by address, to name the block addresses:
/// the kernel's from its `System.map`, each module's from its `.ko`
/// (functions of its `.text`, which the loader puts first in the module's
/// text, at the address `/proc/modules` gives).
struct Symbols(Vec<(u64, String)>);

impl Symbols {
    fn read(system_map: &Path, modules: &Path) -> Result<Self> {
        let map = std::fs::read_to_string(system_map)
            .with_context(|| format!("cannot read {}", system_map.display()))?;
        let mut symbols: Vec<(u64, String)> = map
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let kind = f.next()?;
                let name = f.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then(|| (addr, demangle(name)))
            })
            .collect();
        let loaded = std::fs::read_to_string(modules)
            .with_context(|| format!("no /proc/modules from the guest at {}", modules.display()))?;
        for line in loaded.lines() {
            // `name size refs deps state address`
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(name), Some(addr)) = (f.first(), f.get(5)) else {
                continue;
            };
            let base = u64::from_str_radix(addr.trim_start_matches("0x"), 16)?;
            if base == 0 {
                bail!("/proc/modules shows no addresses (kptr_restrict?)");
            }
            let short = vm::all_kmods()
                .find(|m| m.2 == *name)
                .map(|m| m.0)
                .with_context(|| format!("a module we did not load: {name}"))?;
            for (offset, function) in module_functions(&vm::ko_path(short)?)? {
                symbols.push((base + offset, format!("{function} [{name}]")));
            }
        }
        symbols.sort();
        Ok(Symbols(symbols))
    }

    /// The function that contains `addr`; user-space addresses are one
    /// bucket.
    fn name(&self, addr: u64) -> String {
        if addr < 0xffff_8000_0000_0000 {
            return "[user space]".into();
        }
        match self.0.partition_point(|s| s.0 <= addr) {
            0 => format!("[kernel {addr:#x}]"),
            i => self.0[i - 1].1.clone(),
        }
    }
}

/// The functions of a module's `.text` section: offset and name.
fn module_functions(ko: &Path) -> Result<Vec<(u64, String)>> {
    let sections = output(Command::new("readelf").arg("-SW").arg(ko))?;
    let text = sections
        .lines()
        .find_map(|l| {
            let l = l.trim_start().strip_prefix('[')?;
            let (index, rest) = l.split_once(']')?;
            (rest.split_whitespace().next() == Some(".text")).then(|| index.trim().to_string())
        })
        .with_context(|| format!("{} has no .text section", ko.display()))?;
    let table = output(Command::new("readelf").arg("-sW").arg(ko))?;
    Ok(table
        .lines()
        .filter_map(|l| {
            // `Num: Value Size Type Bind Vis Ndx Name`
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || f[3] != "FUNC" || f[6] != text {
                return None;
            }
            Some((u64::from_str_radix(f[1], 16).ok()?, demangle(f[7])))
        })
        .collect())
}

/// A Rust symbol demangled, with its hash left out; other names as they are.
fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// The plugin's lines (`<window> <address> <instructions> <executions>`),
/// summed per function, one map per window.
fn windows(text: &str, symbols: &Symbols) -> Result<Vec<BTreeMap<String, u64>>> {
    let mut windows: Vec<BTreeMap<String, u64>> = Vec::new();
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [w, addr, insns, execs] = f[..] else {
            bail!("a line the plugin did not write: {line:?}");
        };
        let w: usize = w.parse()?;
        let addr = u64::from_str_radix(addr, 16)?;
        let n = insns.parse::<u64>()? * execs.parse::<u64>()?;
        while windows.len() < w {
            windows.push(BTreeMap::new());
        }
        let name = names
            .entry(addr)
            .or_insert_with(|| symbols.name(addr))
            .clone();
        *windows[w - 1].entry(name).or_default() += n;
    }
    Ok(windows)
}

/// The plugin, built if needed: `librosetta_profile.so` in the tools cache.
fn ensure_plugin() -> Result<PathBuf> {
    let source = root().join(PLUGIN_SOURCE);
    let qemu = source_version("qemu-system-x86")?;
    let mut key = Hasher::default();
    key.add("source", &std::fs::read(&source)?);
    key.add("qemu", qemu.as_bytes());
    let dir = cache_dir()?
        .join("tools")
        .join(format!("qemu-plugin-{}", key.short()));
    let so = dir.join("librosetta_profile.so");
    if so.exists() {
        return Ok(so);
    }
    let header = plugin_header(&qemu)?;
    step("building the profiling plugin (gcc)");
    std::fs::create_dir_all(&dir)?;
    run(Command::new("gcc")
        .args(["-O2", "-shared", "-fPIC", "-Wall", "-Werror", "-I"])
        .arg(header.parent().context("the header's directory")?)
        .arg("-o")
        .arg(&so)
        .arg(&source))?;
    Ok(so)
}

/// The source version of an installed Debian package.
fn source_version(package: &str) -> Result<String> {
    let v = output(Command::new("dpkg-query").args(["-W", "-f=${source:Version}", package]))?;
    if v.trim().is_empty() {
        bail!("{package} is not installed: run `cargo xtask kernel` first");
    }
    Ok(v.trim().to_string())
}

/// `qemu-plugin.h` of the installed QEMU, from its Debian source package,
/// which apt downloads (a deb-src list of its own, built from the system's
/// Debian mirrors; the system's apt configuration is not touched).
fn plugin_header(version: &str) -> Result<PathBuf> {
    let dir = cache_dir()?.join("tools").join(format!(
        "qemu-plugin-header-{}",
        version.replace([':', '~', '+'], "_")
    ));
    let header = dir.join("qemu-plugin.h");
    if header.exists() {
        return Ok(header);
    }
    step(format!(
        "downloading QEMU's Debian source package ({version}, about 25 MB) for its plugin header"
    ));
    let work = dir.join("download");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("lists/partial"))?;
    let mut list = String::new();
    for (uri, suite) in debian_mirrors()? {
        let _ = writeln!(list, "deb-src {uri} {suite} main");
    }
    std::fs::write(work.join("sources.list"), list)?;
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(&work)
            .arg("-qq")
            .arg("-o")
            .arg(format!(
                "Dir::Etc::sourcelist={}",
                work.join("sources.list").display()
            ))
            .args(["-o", "Dir::Etc::sourceparts=/nonexistent", "-o"])
            .arg(format!(
                "Dir::State::Lists={}",
                work.join("lists").display()
            ))
            .args(args);
        cmd
    };
    run(&mut apt(&["update"]))?;
    run(&mut apt(&[
        "source",
        "--download-only",
        &format!("qemu={version}"),
    ]))?;
    let tarball = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".orig.tar.xz"))
        .context("apt downloaded no qemu .orig.tar.xz")?;
    run(Command::new("tar")
        .current_dir(&work)
        .args(["xJf"])
        .arg(&tarball)
        .args(["--wildcards", "*/include/qemu/qemu-plugin.h"]))?;
    let found = crate::util::files_under(&work)?
        .into_iter()
        .find(|p| p.ends_with("include/qemu/qemu-plugin.h"))
        .context("no include/qemu/qemu-plugin.h in QEMU's source")?;
    std::fs::copy(&found, &header)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(header)
}

/// The Debian mirrors and suites of the system's apt sources (deb822
/// `.sources` files and the classic `sources.list`).
fn debian_mirrors() -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "sources"));
    for file in files {
        for stanza in std::fs::read_to_string(&file)?.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            if !field("Types:").iter().any(|t| t == "deb") {
                continue;
            }
            for uri in field("URIs:") {
                for suite in field("Suites:") {
                    out.push((uri.clone(), suite));
                }
            }
        }
    }
    if let Ok(list) = std::fs::read_to_string("/etc/apt/sources.list") {
        for line in list.lines() {
            // `deb [options] uri suite components...`
            let f: Vec<&str> = line
                .split_whitespace()
                .filter(|w| !w.starts_with('[') && !w.ends_with(']'))
                .collect();
            if let ["deb", uri, suite, ..] = f[..] {
                out.push((uri.to_string(), suite.to_string()));
            }
        }
    }
    if out.is_empty() {
        bail!("no Debian mirror in /etc/apt/sources.list(.d): cannot download QEMU's source");
    }
    Ok(out)
}
