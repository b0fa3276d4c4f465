//! `cargo xtask book [--check]`: the netlink-rosetta book (`book/`), built
//! with mdBook into `target/book/`, readable offline from disk.
//!
//! The tools are pinned and installed by xtask into the project cache, as
//! bindgen-cli is: mdBook and mdbook-mermaid with `cargo install --locked`
//! (mdbook-mermaid ships mermaid.js, so the diagrams render without a
//! network), and Debian's `chromium` with apt for the browser pass.
//!
//! `--check` verifies, and fails naming the page and the fix:
//!
//! 1. **sources**: every `{{#include file:anchor}}` names a file that
//!    exists and, for an anchor, holds both `ANCHOR: name` and
//!    `ANCHOR_END: name` around something (mdBook only logs a missing file
//!    and silently includes nothing for a missing anchor); every `rust` or
//!    `c` code block of a page is made of includes only, so every snippet
//!    is a file the build compiles;
//! 2. **links**: every relative `href`/`src` of every built page resolves
//!    to a file, and every `#fragment` of a link to one of our pages to an
//!    `id` in it;
//! 3. **outputs**: every `console` block of the book and of `README.md` is
//!    commands (`$ ...`) and their output. A `cargo xtask vm [--modules M]
//!    -- CMD` is run in one VM boot, as `cargo xtask vm` would run it (only
//!    the modules M loaded, CMD through `sh -c` from the workspace root),
//!    and its output must equal the lines under it, after [`normalise`]
//!    (portids, family ids, timestamps, durations and rates). A vm command
//!    with no lines under it must exit 0. Any other command must have no
//!    output under it (it is not run): show the output of long runs in
//!    `text` blocks, saying which run it came from;
//! 4. **browser**: headless Chromium opens every built page from disk,
//!    offline, over the DevTools protocol, and fails on a resource that did
//!    not load, a script error or console error, or a mermaid diagram that
//!    did not become an `<svg>`; it saves a screenshot of each kernel
//!    variant page to `target/book/screenshots/`.
//!
//! `cargo xtask test` can run step 3 inside its own VM boot: see
//! [`guest_command`] and [`check_outputs`]; steps 1, 2 and 4 need no VM
//! ([`check_without_vm`]).

use crate::util::{cache_dir, elapsed, output, root, run, show, step};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MDBOOK_VERSION: &str = "0.5.4";
const MDBOOK_MERMAID_VERSION: &str = "0.17.1";

/// The pages whose screenshot `--check` keeps (the kernel variants), by
/// their path under `book/src/` without `.md`.
const SCREENSHOT_PAGES: &[&str] = &["kernel/raw", "kernel/kthread", "kernel/genl"];

/// The book's sources.
pub fn book_dir() -> PathBuf {
    root().join("book")
}

/// Where mdBook writes the HTML (`build-dir` in `book/book.toml`).
pub fn out_dir() -> PathBuf {
    root().join("target/book")
}

/// Where the VM writes the outputs of the book's commands.
pub fn run_dir() -> PathBuf {
    root().join("target/rosetta/book-run")
}

/// `cargo xtask book [--check]`.
pub fn run_book(check: bool) -> Result<i32> {
    let start = Instant::now();
    if !check {
        let out = build()?;
        step(format!(
            "built the book in {}: open {} in a browser",
            elapsed(start),
            out.join("index.html").display()
        ));
        return Ok(0);
    }
    check_without_vm()?;
    // The commands are planned first: a page error shows before any build.
    let dir = run_dir();
    let command = guest_command(&dir)?;
    let kernel = crate::kmod::build_all(crate::kernel::Flavour::Normal)?;
    let rc = crate::vm::run(&crate::vm::VmRun {
        kernel: &kernel,
        modules: Vec::new(), // the script loads each command's own
        cmd: vec!["sh".into(), "-c".into(), command],
        timeout: Duration::from_secs(300),
        cpus: 1,
        rw_dirs: vec![dir.clone()],
        verbose: false,
        icount: false,
        plugin: None,
    })?;
    if rc != 0 {
        bail!(
            "the book's commands did not all run in the VM (exit status {rc}); see {}",
            dir.display()
        );
    }
    check_outputs(&dir)?;
    step(format!("the book checks out ({} in all)", elapsed(start)));
    Ok(0)
}

/// Builds the book, then the checks that need no VM: sources, links, and
/// the browser pass.
pub fn check_without_vm() -> Result<()> {
    let out = build()?;
    step("checking the book's links and images");
    check_links(&out)?;
    browser_check(&out)
}

// ---------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------

/// `cargo install --locked KRATE --version VERSION` into the cache; returns
/// the `bin/` directory.
fn cargo_install(krate: &str, version: &str, extra: &[&str], what: &str) -> Result<PathBuf> {
    let prefix = cache_dir()?.join(format!("tools/{krate}-{version}"));
    let bin = prefix.join("bin");
    if bin.join(krate).exists() {
        return Ok(bin);
    }
    step(format!(
        "installing {krate} {version} into {} ({what})",
        prefix.display()
    ));
    run(Command::new(env!("CARGO"))
        .args([
            "install",
            "--locked",
            "--quiet",
            krate,
            "--version",
            version,
        ])
        .args(extra)
        .arg("--root")
        .arg(&prefix))
    .with_context(|| {
        format!(
            "installing {krate} failed; delete {} and retry",
            prefix.display()
        )
    })?;
    Ok(bin)
}

/// mdBook (without its web server and file watcher, which the build does
/// not use) and mdbook-mermaid; returns their `bin/` directories.
fn ensure_mdbook() -> Result<(PathBuf, PathBuf)> {
    let mdbook = cargo_install(
        "mdbook",
        MDBOOK_VERSION,
        &["--no-default-features", "--features", "search"],
        "a few minutes, once",
    )?;
    let mermaid = cargo_install(
        "mdbook-mermaid",
        MDBOOK_MERMAID_VERSION,
        &[],
        "about two minutes, once",
    )?;
    Ok((mdbook, mermaid))
}

/// Debian's chromium, installed with apt when missing.
fn ensure_chromium() -> Result<PathBuf> {
    let bin = PathBuf::from("/usr/bin/chromium");
    if bin.exists() {
        return Ok(bin);
    }
    let install = "apt-get install -y --no-install-recommends chromium";
    let uid = output(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        bail!("the browser check needs Debian's chromium; run as root:\n    apt-get update && {install}");
    }
    step("installing Debian's chromium for the browser check (a minute or two)");
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("sh")
        .arg("-c")
        .arg(install)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if !bin.exists() {
        bail!("{install} did not install {}", bin.display());
    }
    Ok(bin)
}

// ---------------------------------------------------------------------------
// Build
// ---------------------------------------------------------------------------

/// Checks the sources, then builds the book into `target/book/`.
pub fn build() -> Result<PathBuf> {
    // Before the sources' check: a page includes it.
    step("rendering the YNL reference page (proto/spec/my_genl.rst) for the book");
    crate::ynl::render_reference()?;
    step("checking the book's sources: includes, anchors, code blocks");
    check_sources()?;
    let (mdbook, mermaid) = ensure_mdbook()?;
    let book = book_dir();
    // mermaid.js comes from the pinned mdbook-mermaid, not from git.
    for asset in ["mermaid.min.js", "mermaid-init.js"] {
        let _ = std::fs::remove_file(book.join(asset));
    }
    let path = format!(
        "{}:{}:{}",
        mermaid.display(),
        mdbook.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(mermaid.join("mdbook-mermaid"))
        .arg("install")
        .arg(&book)
        .env("RUST_LOG", "warn")
        .output()
        .context("cannot start mdbook-mermaid")?;
    if !out.status.success() {
        bail!(
            "mdbook-mermaid install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !crate::util::output(Command::new("git").current_dir(root()).args([
        "status",
        "--porcelain",
        "book/book.toml",
    ]))?
    .trim()
    .is_empty()
    {
        step("note: mdbook-mermaid changed book/book.toml; review the change");
    }
    step(format!("building the book with mdBook {MDBOOK_VERSION}"));
    let mut cmd = Command::new(mdbook.join("mdbook"));
    cmd.arg("build").arg(&book).env("PATH", &path);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", show(&cmd)))?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    if !out.status.success() || !problems.is_empty() {
        eprintln!("{log}");
        bail!("`{}` failed or warned (above)", show(&cmd));
    }
    let dir = out_dir();
    if !dir.join("index.html").exists() {
        bail!("mdBook wrote no {}", dir.join("index.html").display());
    }
    Ok(dir)
}

/// The markdown pages: `book/src/**/*.md`.
fn pages() -> Result<Vec<PathBuf>> {
    Ok(crate::util::files_under(&book_dir().join("src"))?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect())
}

/// Shows a path relative to the workspace root.
fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// One `{{#include path[:anchor]}}` of a page.
struct Include {
    line: usize,
    path: PathBuf,
    anchor: Option<String>,
}

/// The includes of a page's text (also `#rustdoc_include`).
fn includes(page: &Path, text: &str) -> Vec<Include> {
    let dir = page.parent().unwrap_or(Path::new("."));
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("{{#") {
            let escaped = rest[..start].ends_with('\\');
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else { break };
            let directive = after[..end].trim();
            rest = &after[end + 2..];
            if escaped {
                continue; // `\{{#include ..}}`: shown as it is
            }
            let Some(arg) = directive
                .strip_prefix("include ")
                .or_else(|| directive.strip_prefix("rustdoc_include "))
            else {
                continue;
            };
            let arg = arg.trim();
            let (file, anchor) = match arg.split_once(':') {
                Some((file, anchor)) => (file, Some(anchor.to_string())),
                None => (arg, None),
            };
            // Line ranges (`file:3:9`, `file:3:`) are not anchors.
            let anchor =
                anchor.filter(|a| !a.starts_with(|c: char| c.is_ascii_digit() || c == ':'));
            found.push(Include {
                line: n + 1,
                path: normalise_path(&dir.join(file)),
                anchor,
            });
        }
    }
    found
}

/// Step 1: includes and anchors resolve; rust and c blocks are includes.
pub fn check_sources() -> Result<()> {
    let mut errors = Vec::new();
    for page in pages()? {
        let text = std::fs::read_to_string(&page)?;
        for inc in includes(&page, &text) {
            let at = format!("{}:{}", rel(&page), inc.line);
            let Ok(file) = std::fs::read_to_string(&inc.path) else {
                errors.push(format!(
                    "{at}: includes {}, which does not exist",
                    rel(&inc.path)
                ));
                continue;
            };
            let Some(anchor) = inc.anchor else { continue };
            let lines: Vec<&str> = file.lines().collect();
            let b = lines.iter().position(|l| marks(l, "ANCHOR:", &anchor));
            let e = lines.iter().position(|l| marks(l, "ANCHOR_END:", &anchor));
            match (b, e) {
                (Some(b), Some(e)) if e > b + 1 => {}
                (Some(_), Some(_)) => errors.push(format!(
                    "{at}: anchor `{anchor}` of {} is empty or ends before it begins",
                    rel(&inc.path)
                )),
                _ => errors.push(format!(
                    "{at}: {} has no anchor `{anchor}`: add `// ANCHOR: {anchor}` and `// ANCHOR_END: {anchor}` lines around the code to show",
                    rel(&inc.path)
                )),
            }
        }
        errors.extend(typed_code(&page, &text));
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("    {e}");
        }
        bail!("{} problems in the book's sources (above)", errors.len());
    }
    Ok(())
}

/// Whether `line` holds `marker` (`ANCHOR:` or `ANCHOR_END:`) followed by
/// the anchor `name`, as mdBook finds anchors: anywhere in the line, in any
/// comment syntax.
fn marks(line: &str, marker: &str, name: &str) -> bool {
    line.match_indices(marker).any(|(i, _)| {
        let rest = line[i + marker.len()..].trim_start();
        let word: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        word == name
    })
}

/// The `rust` and `c` code blocks of a page that hold anything but
/// includes: code must come from a compiled file.
fn typed_code(page: &Path, text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut fence: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            match &fence {
                None => fence = Some((n + 1, info.trim().to_string())),
                Some(_) if info.trim().is_empty() => fence = None,
                Some(_) => {}
            }
            continue;
        }
        let Some((start, info)) = &fence else {
            continue;
        };
        let lang = info.split([',', ' ']).next().unwrap_or("");
        if matches!(lang, "rust" | "c") && !t.is_empty() && !t.starts_with("{{#") {
            errors.push(format!(
                "{}:{}: the {lang} block opened at line {start} has typed code; include it from a compiled file instead ({{{{#include path:anchor}}}})",
                rel(page),
                n + 1
            ));
            fence = None; // one error per block
        }
    }
    errors
}

// ---------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------

/// The values of every `attr="..."` in an HTML text.
fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + needle.len()..];
        if let Some(end) = rest.find('"') {
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

/// Undoes the percent-encoding of a URL path.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Step 2: every relative link and resource of the built pages resolves.
pub fn check_links(out: &Path) -> Result<()> {
    let html_files: Vec<PathBuf> = crate::util::files_under(out)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    let mut ids: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
    for f in &html_files {
        let text = std::fs::read_to_string(f)?;
        let set = attr_values(&text, "id")
            .into_iter()
            .map(str::to_string)
            .collect();
        ids.insert(f.clone(), set);
    }
    let mut errors = BTreeSet::new();
    for f in &html_files {
        // mdBook's 404 page is for web servers: its links are site-absolute.
        if f.file_name().is_some_and(|n| n == "404.html") {
            continue;
        }
        let text = std::fs::read_to_string(f)?;
        let dir = f.parent().unwrap_or(out);
        for link in attr_values(&text, "href")
            .into_iter()
            .chain(attr_values(&text, "src"))
        {
            if link.is_empty()
                || link.starts_with('#') && link.len() == 1
                || link.contains("://")
                || link.starts_with("mailto:")
                || link.starts_with("javascript:")
                || link.starts_with("data:")
            {
                continue;
            }
            let (path, fragment) = match link.split_once('#') {
                Some((p, frag)) => (p, Some(frag)),
                None => (link, None),
            };
            let path = path.split('?').next().unwrap_or(path);
            let target = if path.is_empty() {
                f.clone()
            } else if let Some(abs) = path.strip_prefix('/') {
                out.join(percent_decode(abs))
            } else {
                dir.join(percent_decode(path))
            };
            let target = normalise_path(&target);
            if !target.exists() {
                errors.insert(format!("{}: `{link}` does not resolve", rel(f)));
                continue;
            }
            if let (Some(frag), Some(set)) = (fragment, ids.get(&target)) {
                if !frag.is_empty() && !set.contains(&percent_decode(frag)) {
                    errors.insert(format!(
                        "{}: `{link}`: {} has no id `{frag}`",
                        rel(f),
                        rel(&target)
                    ));
                }
            }
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("    {e}");
        }
        bail!(
            "{} broken links or resources in the built book (above): fix the page that links",
            errors.len()
        );
    }
    Ok(())
}

/// Resolves `.` and `..` without touching the filesystem.
fn normalise_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------

/// One command of a `console` block and the lines under it.
#[derive(Debug, Clone)]
struct Shown {
    page: PathBuf,
    line: usize,
    command: String,
    output: Vec<String>,
}

/// A `cargo xtask vm` command: the modules it loads and what it runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct VmCommand {
    modules: Vec<String>,
    cmd: String,
}

/// Every command shown in a `console` block of the book and the README.
fn shown_commands() -> Result<Vec<Shown>> {
    let mut files = pages()?;
    files.push(root().join("README.md"));
    let mut shown = Vec::new();
    for page in files {
        let text = std::fs::read_to_string(&page)?;
        let mut in_console = false;
        let mut fence_open = false;
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if let Some(info) = t.strip_prefix("```") {
                if fence_open {
                    if info.trim().is_empty() {
                        fence_open = false;
                        in_console = false;
                    }
                } else {
                    fence_open = true;
                    in_console = info.trim().split([',', ' ']).next() == Some("console");
                }
                continue;
            }
            if !in_console {
                continue;
            }
            if let Some(cmd) = line.strip_prefix("$ ") {
                shown.push(Shown {
                    page: page.clone(),
                    line: n + 1,
                    command: cmd.trim().to_string(),
                    output: Vec::new(),
                });
            } else if let Some(last) = shown.last_mut().filter(|s| s.page == page) {
                last.output.push(line.to_string());
            } else {
                bail!(
                    "{}:{}: a console block must start with a `$ ` command line",
                    rel(&page),
                    n + 1
                );
            }
        }
    }
    Ok(shown)
}

/// Parses `cargo xtask vm [--modules a,b] [--cpus N] [--timeout S] -- CMD`;
/// `None` for any other command.
fn parse_vm_command(command: &str) -> Result<Option<VmCommand>> {
    let Some(rest) = command.strip_prefix("cargo xtask vm ") else {
        return Ok(None);
    };
    let rest = format!(" {rest}");
    let (opts, cmd) = rest
        .split_once(" -- ")
        .context("a `cargo xtask vm` command needs ` -- CMD`")?;
    let mut modules = Vec::new();
    let mut words = opts.split_whitespace();
    while let Some(w) = words.next() {
        match w.split_once('=') {
            Some(("--modules", v)) => modules.extend(v.split(',').map(str::to_string)),
            None if w == "--modules" => {
                let v = words.next().context("--modules without its value")?;
                modules.extend(v.split(',').map(str::to_string))
            }
            None if w == "--cpus" || w == "--timeout" => {
                words
                    .next()
                    .with_context(|| format!("{w} without its value"))?;
            }
            Some(("--cpus" | "--timeout", _)) => {}
            _ => bail!(
                "`{w}` is not supported in a checked command (the check runs the normal kernel)"
            ),
        }
    }
    Ok(Some(VmCommand {
        modules,
        cmd: cmd.trim().to_string(),
    }))
}

/// The distinct vm commands to run, in a stable order, with where each is
/// shown.
fn plan() -> Result<BTreeMap<VmCommand, Vec<Shown>>> {
    let mut plan: BTreeMap<VmCommand, Vec<Shown>> = BTreeMap::new();
    let mut errors = Vec::new();
    for s in shown_commands()? {
        let at = format!("{}:{}", rel(&s.page), s.line);
        match parse_vm_command(&s.command) {
            Ok(Some(vm)) => plan.entry(vm).or_default().push(s),
            Ok(None) if s.output.iter().all(|l| l.trim().is_empty()) => {}
            Ok(None) => errors.push(format!(
                "{at}: `{}` shows output, but the check runs only `cargo xtask vm ... -- CMD`: show a long run's output in a `text` block and say where it came from",
                s.command
            )),
            Err(e) => errors.push(format!("{at}: {e:#}")),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("    {e}");
        }
        bail!("{} commands the check cannot run (above)", errors.len());
    }
    Ok(plan)
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes the guest script that runs every vm command of the book and the
/// README into `dir` (which the VM must be able to write: pass it in
/// `VmRun::rw_dirs`), and returns the guest command that runs it. It first
/// unloads every project module, then loads each command's modules, runs
/// it, and unloads them again, so it can follow other work in the same
/// boot: `cargo xtask test` appends it to its VM script, then calls
/// [`check_outputs`] with the same `dir`.
pub fn guest_command(dir: &Path) -> Result<String> {
    let plan = plan()?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut s = String::from(
        "#!/bin/sh\n# Written by `cargo xtask book --check`; runs inside the guest.\n",
    );
    s += &format!("out={}\n", sh_quote(&dir.to_string_lossy()));
    s += &format!("cd {}\n", sh_quote(&root().to_string_lossy()));
    s += "export ROSETTA_VM=1\nstatus=0\n";
    for (_, _, name) in crate::vm::all_kmods() {
        s += &format!("if grep -q '^{name} ' /proc/modules; then rmmod {name} || exit 1; fi\n");
    }
    let total = plan.len();
    for (i, vm) in plan.keys().enumerate() {
        std::fs::write(dir.join(format!("{i}.cmd")), cmd_line(vm))?;
        s += &format!(
            "echo '==> book command {}/{total}: {}'\n",
            i + 1,
            cmd_line(vm).replace('\'', "")
        );
        let mut names = Vec::new();
        for short in &vm.modules {
            let ko = crate::vm::ko_path(short)?;
            let name = ko
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            s += &format!(
                "insmod {} || {{ echo 'book check: insmod {short} failed' >&2; exit 1; }}\n",
                sh_quote(&ko.to_string_lossy())
            );
            names.push(name);
        }
        s += &format!(
            "sh -c {} > \"$out/{i}.out\" 2>&1; echo $? > \"$out/{i}.rc\"\n",
            sh_quote(&vm.cmd)
        );
        for name in names.iter().rev() {
            s += &format!("rmmod {name} || status=1\n");
        }
    }
    s += "exit $status\n";
    let script = dir.join("guest.sh");
    std::fs::write(&script, s)?;
    Ok(format!("sh {}", sh_quote(&script.to_string_lossy())))
}

fn cmd_line(vm: &VmCommand) -> String {
    format!("[{}] {}", vm.modules.join(","), vm.cmd)
}

/// Step 3: compares what the VM printed for each command with every block
/// that shows it.
pub fn check_outputs(dir: &Path) -> Result<()> {
    step("comparing the book's shown outputs with the VM's");
    let plan = plan()?;
    let mut errors = Vec::new();
    for (i, (vm, shown)) in plan.iter().enumerate() {
        let ran = std::fs::read_to_string(dir.join(format!("{i}.cmd"))).unwrap_or_default();
        if ran != cmd_line(vm) {
            bail!(
                "{} is from another version of the book: run the check again",
                dir.display()
            );
        }
        let actual = std::fs::read_to_string(dir.join(format!("{i}.out")))
            .with_context(|| format!("the VM did not run `{}`", vm.cmd))?;
        let rc: i32 = std::fs::read_to_string(dir.join(format!("{i}.rc")))
            .ok()
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or(-1);
        let actual: Vec<String> = trim_lines(actual.lines().map(str::to_string).collect());
        for s in shown {
            let at = format!("{}:{}", rel(&s.page), s.line);
            let expected = trim_lines(s.output.clone());
            if expected.is_empty() {
                if rc != 0 {
                    errors.push(format!(
                        "{at}: `{}` exited with status {rc}:\n{}",
                        s.command,
                        indent(&actual)
                    ));
                }
                continue;
            }
            let norm = |v: &[String]| v.iter().map(|l| normalise(l)).collect::<Vec<_>>();
            if norm(&expected) != norm(&actual) {
                errors.push(format!(
                    "{at}: `{}` (exit status {rc}) printed\n{}\n  but the page shows\n{}",
                    s.command,
                    indent(&actual),
                    indent(&expected)
                ));
            }
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("    {e}");
        }
        bail!(
            "{} shown outputs differ from a real run (above): paste the real output into the page (portids, family ids, times and rates may differ)",
            errors.len()
        );
    }
    step(format!(
        "{} commands' outputs match the pages that show them",
        plan.len()
    ));
    Ok(())
}

fn trim_lines(mut v: Vec<String>) -> Vec<String> {
    for l in v.iter_mut() {
        *l = l.trim_end().to_string();
    }
    while v.last().is_some_and(|l| l.is_empty()) {
        v.pop();
    }
    while v.first().is_some_and(|l| l.is_empty()) {
        v.remove(0);
    }
    v
}

fn indent(v: &[String]) -> String {
    v.iter()
        .map(|l| format!("      | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What may differ between two honest runs of the same command, and only
/// that: port ids, generic netlink family ids, kernel log timestamps,
/// durations and rates. Each becomes a placeholder.
pub fn normalise(line: &str) -> String {
    let mut s = line.to_string();
    // A kernel log timestamp: `[    3.141592] `.
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((stamp, tail)) = rest.split_once(']') {
            if !stamp.trim().is_empty()
                && stamp.trim().chars().all(|c| c.is_ascii_digit() || c == '.')
            {
                s = format!("[T]{tail}");
            }
        }
    }
    for (marker, kind) in [
        ("portid ", Kind::Int),
        ("\"portid\":", Kind::Int),
        // ynl's JSON (`--output-json`) has a space after the colon.
        ("\"portid\": ", Kind::Int),
        (" id ", Kind::Int),
        ("\"family_id\":", Kind::Int),
        ("ID: 0x", Kind::Hex),
        ("\"seconds\":", Kind::Float),
        ("\"round_trips_per_s\":", Kind::Float),
    ] {
        s = replace_after(&s, marker, kind);
    }
    // A multicast group's id, assigned at registration:
    // `#1:  ID-0x7  name: events` (`genl ctrl get`).
    if s.contains("  name: ") {
        s = replace_after(&s, "ID-0x", Kind::Hex);
    }
    // `10000 round trips of 5 bytes in 0.512 s: 19531 round trips/s`
    if let Some(i) = s.find(" round trips/s") {
        let head = &s[..i];
        let start = head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        s = format!("{}R{}", &s[..start], &s[i..]);
        s = replace_after(&s, " in ", Kind::Float);
    }
    s
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Hex,
    Float,
}

/// Replaces the number right after each `marker` with `N`.
fn replace_after(s: &str, marker: &str, kind: Kind) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        rest = &rest[i + marker.len()..];
        let len = rest
            .find(|c: char| match kind {
                Kind::Int => !c.is_ascii_digit(),
                Kind::Hex => !c.is_ascii_hexdigit(),
                Kind::Float => !(c.is_ascii_digit() || c == '.'),
            })
            .unwrap_or(rest.len());
        if len > 0 {
            out.push('N');
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// The browser pass: headless Chromium over the DevTools protocol
// ---------------------------------------------------------------------------

/// A Chromium driven over `--remote-debugging-pipe`: JSON messages ending
/// in a NUL byte, written to its fd 3 and read from its fd 4.
struct Browser {
    child: Child,
    to: ChildStdin,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    /// Events received while waiting for answers.
    events: Vec<Value>,
}

impl Browser {
    fn launch(chromium: &Path, profile: &Path, log: &Path) -> Result<Browser> {
        let log = std::fs::File::create(log)?;
        // fd 3 and 4 through the shell: the pipe's ends are our stdin and
        // stdout of `sh`, which hands them on and gives chromium /dev/null
        // and the log instead.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
                "--allow-file-access-from-files",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start chromium")?;
        let to = child.stdin.take().expect("piped");
        let mut from = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut byte = [0u8; 65536];
            loop {
                let n = match from.read(&mut byte) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&byte[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Browser {
            child,
            to,
            from: rx,
            next_id: 1,
            events: Vec::new(),
        })
    }

    /// Sends a command and waits for its answer, keeping the events.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg)?;
        bytes.push(0);
        self.to
            .write_all(&bytes)
            .and_then(|()| self.to.flush())
            .context("chromium closed its DevTools pipe")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .with_context(|| format!("no answer from chromium to {method}"))?;
            if v["id"] == json!(id) {
                if let Some(err) = v.get("error") {
                    bail!("chromium: {method} failed: {err}");
                }
                return Ok(v["result"].clone());
            }
            self.events.push(v);
        }
    }

    /// Waits up to `timeout` for an event named `method`; keeps the others.
    fn wait_event(&mut self, method: &str, timeout: Duration) -> Result<()> {
        if self.events.iter().any(|e| e["method"] == method) {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .with_context(|| format!("chromium sent no {method} within {timeout:?}"))?;
            let done = v["method"] == method;
            self.events.push(v);
            if done {
                return Ok(());
            }
        }
    }

    /// Takes the events received so far, and whatever is already queued.
    fn drain(&mut self) -> Vec<Value> {
        while let Ok(v) = self.from.try_recv() {
            self.events.push(v);
        }
        std::mem::take(&mut self.events)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The problems a page's events report: scripts that threw, console errors,
/// resources that failed to load.
fn problems(events: &[Value]) -> Vec<String> {
    let mut urls = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        let p = &e["params"];
        match e["method"].as_str().unwrap_or("") {
            "Network.requestWillBeSent" => {
                urls.insert(
                    p["requestId"].as_str().unwrap_or("").to_string(),
                    p["request"]["url"].as_str().unwrap_or("").to_string(),
                );
            }
            "Network.loadingFailed" if p["canceled"] != true => {
                let url = urls
                    .get(p["requestId"].as_str().unwrap_or(""))
                    .cloned()
                    .unwrap_or_default();
                out.push(format!(
                    "resource did not load: {url} ({})",
                    p["errorText"].as_str().unwrap_or("")
                ));
            }
            "Runtime.exceptionThrown" => {
                let d = &p["exceptionDetails"];
                let text = d["exception"]["description"]
                    .as_str()
                    .or(d["text"].as_str())
                    .unwrap_or("");
                out.push(format!(
                    "script error: {} ({}:{})",
                    text.lines().next().unwrap_or(""),
                    d["url"].as_str().unwrap_or(""),
                    d["lineNumber"]
                ));
            }
            "Runtime.consoleAPICalled"
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                x["value"]
                                    .as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| x["description"].to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(format!("console.error: {}", args.join(" ")));
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                out.push(format!(
                    "{} error: {} {}",
                    p["entry"]["source"].as_str().unwrap_or(""),
                    p["entry"]["text"].as_str().unwrap_or(""),
                    p["entry"]["url"].as_str().unwrap_or("")
                ));
            }
            _ => {}
        }
    }
    out
}

/// Counts a page's mermaid diagrams and those that became an `<svg>`
/// without mermaid's error picture.
const DIAGRAMS_JS: &str = r#"(() => {
  const d = [...document.querySelectorAll('pre.mermaid, div.mermaid')];
  const ok = d.filter(e => e.querySelector('svg') && !/Syntax error|Parse error/i.test(e.textContent));
  return JSON.stringify({ total: d.length, rendered: ok.length,
    height: Math.ceil(document.documentElement.scrollHeight) });
})()"#;

/// The browser window's width, in CSS pixels: wide enough for C and Rust
/// side by side beside the table of contents.
const WIDTH: u32 = 1600;

/// Step 4: every built page in headless Chromium.
pub fn browser_check(out: &Path) -> Result<()> {
    let chromium = ensure_chromium()?;
    let start = Instant::now();
    let mut html: Vec<PathBuf> = crate::util::files_under(out)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        // mdBook's 404 page is for web servers: its links are site-absolute.
        .filter(|p| p.file_name().is_some_and(|n| n != "404.html"))
        .collect();
    html.sort();
    step(format!(
        "opening the {} built pages in headless Chromium ({})",
        html.len(),
        chromium.display()
    ));
    let work = root().join("target/rosetta/book-browser");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let shots = out.join("screenshots");
    std::fs::create_dir_all(&shots)?;
    let log = work.join("chromium.log");
    let mut b = Browser::launch(&chromium, &work.join("profile"), &log)?;
    let target = b.call(None, "Target.createTarget", json!({ "url": "about:blank" }))?;
    let target_id = target["targetId"].as_str().unwrap_or("").to_string();
    let attached = b.call(
        None,
        "Target.attachToTarget",
        json!({ "targetId": target_id, "flatten": true }),
    )?;
    let session = attached["sessionId"]
        .as_str()
        .context("chromium gave no DevTools session")?
        .to_string();
    let s = Some(session.as_str());
    for domain in ["Page", "Runtime", "Log", "Network"] {
        b.call(s, &format!("{domain}.enable"), json!({}))?;
    }
    b.call(
        s,
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    )?;
    let mut errors = Vec::new();
    let mut diagrams = 0;
    for page in &html {
        let name = rel(page);
        b.drain();
        b.call(
            s,
            "Page.navigate",
            json!({ "url": format!("file://{}", page.display()) }),
        )?;
        if let Err(e) = b.wait_event("Page.loadEventFired", Duration::from_secs(30)) {
            errors.push(format!("{name}: {e:#}"));
            continue;
        }
        // Mermaid renders after the load event: wait for it, at most 20 s.
        let deadline = Instant::now() + Duration::from_secs(20);
        let state = loop {
            let r = b.call(
                s,
                "Runtime.evaluate",
                json!({ "expression": DIAGRAMS_JS, "returnByValue": true }),
            )?;
            let state: Value = serde_json::from_str(r["result"]["value"].as_str().unwrap_or("{}"))?;
            if state["rendered"] == state["total"] || Instant::now() > deadline {
                break state;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let (total, rendered) = (
            state["total"].as_u64().unwrap_or(0),
            state["rendered"].as_u64().unwrap_or(0),
        );
        diagrams += rendered;
        if rendered < total {
            errors.push(format!(
                "{name}: {} of {total} mermaid diagrams did not render (see the diagram's text in the page)",
                total - rendered
            ));
        }
        // Late events (a script that failed after load) are still seen.
        std::thread::sleep(Duration::from_millis(100));
        for p in problems(&b.drain()) {
            errors.push(format!("{name}: {p}"));
        }
        let stem = page
            .strip_prefix(out)
            .unwrap_or(page)
            .with_extension("")
            .display()
            .to_string();
        if SCREENSHOT_PAGES.contains(&stem.as_str()) {
            let height = state["height"].as_u64().unwrap_or(900).clamp(900, 12000);
            let shot = b.call(
                s,
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true,
                        "clip": { "x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1 } }),
            )?;
            let png = base64_decode(shot["data"].as_str().unwrap_or(""))?;
            let file = shots.join(format!("{}.png", stem.replace('/', "-")));
            std::fs::write(&file, png)?;
        }
    }
    drop(b);
    if !errors.is_empty() {
        bail!(
            "{} problems in the browser (chromium's own log: {}):\n    {}",
            errors.len(),
            log.display(),
            errors.join("\n    ")
        );
    }
    step(format!(
        "browser: {} pages without errors, {diagrams} diagrams rendered, screenshots in {} ({})",
        html.len(),
        shots.display(),
        elapsed(start)
    ));
    Ok(())
}

/// Standard base64, as DevTools sends screenshots.
fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => bail!("chromium sent a screenshot that is not base64"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_hides_group_ids_but_not_command_numbers() {
        assert_eq!(
            normalise("\t\t#1:  ID-0x7  name: events "),
            "\t\t#1:  ID-0xN  name: events "
        );
        assert_eq!(normalise("\t\t#2:  ID-0x2 "), "\t\t#2:  ID-0x2 ");
    }

    #[test]
    fn normalise_keeps_all_but_ids_times_and_rates() {
        assert_eq!(
            normalise("module raw: netlink unit 31, portid 283"),
            "module raw: netlink unit 31, portid N"
        );
        assert_eq!(
            normalise("module genl: family my_genl id 25, portid 7"),
            "module genl: family my_genl id N, portid N"
        );
        assert_eq!(
            normalise("\tID: 0x19  Version: 0x1  header size: 0  max attribs: 1"),
            "\tID: 0xN  Version: 0x1  header size: 0  max attribs: 1"
        );
        assert_eq!(
            normalise("10000 round trips of 5 bytes in 0.512 s: 19531 round trips/s"),
            "10000 round trips of 5 bytes in N s: R round trips/s"
        );
        assert_eq!(
            normalise("[    3.141592] kmod_raw: echo on netlink unit 31"),
            "[T] kmod_raw: echo on netlink unit 31"
        );
        let seq = "echo seq 1: sent 13 bytes, received 13 bytes: \"hello netlink\"";
        assert_eq!(normalise(seq), seq);
    }

    #[test]
    fn vm_commands_parse() {
        let vm =
            parse_vm_command("cargo xtask vm --modules raw,genl -- target/debug/user-raw \"hi\"")
                .unwrap()
                .unwrap();
        assert_eq!(vm.modules, ["raw", "genl"]);
        assert_eq!(vm.cmd, "target/debug/user-raw \"hi\"");
        let bare = parse_vm_command("cargo xtask vm -- true").unwrap().unwrap();
        assert!(bare.modules.is_empty() && bare.cmd == "true");
        assert!(parse_vm_command("cargo xtask test").unwrap().is_none());
        assert!(parse_vm_command("cargo xtask vm --debug -- x").is_err());
    }

    #[test]
    fn anchors_are_found_in_any_comment() {
        assert!(marks("/* ANCHOR: create */", "ANCHOR:", "create"));
        assert!(marks("    // ANCHOR_END: create", "ANCHOR_END:", "create"));
        assert!(!marks("// ANCHOR: created", "ANCHOR:", "create"));
        assert!(!marks("// ANCHOR_END: create", "ANCHOR:", "create"));
    }

    /// The browser pass finds what it must: a missing image, a script error
    /// and a diagram that does not render. Needs chromium, so it is not in
    /// the default run: `cargo test -p xtask -- --ignored browser`.
    #[test]
    #[ignore = "needs Debian's chromium"]
    fn browser_check_reports_broken_pages() {
        let dir = std::env::temp_dir().join(format!("rosetta-book-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("broken.html"),
            r#"<html><body><img src="missing.png"><script>throw new Error("boom")</script>
<pre class="mermaid">never rendered</pre></body></html>"#,
        )
        .unwrap();
        let err = format!("{:#}", browser_check(&dir).unwrap_err());
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("{err}");
        for expected in ["missing.png", "boom", "mermaid diagrams did not render"] {
            assert!(err.contains(expected), "no {expected:?} in: {err}");
        }
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
    }

    #[test]
    fn includes_and_anchors_are_found() {
        let inc = includes(
            Path::new("/b/src/p.md"),
            "x {{#include ../../a.rs:create}} {{#include ../c.c}} {{#include d.rs:3:9}} \\{{#include e}}",
        );
        assert_eq!(inc.len(), 3);
        assert_eq!(inc[0].path, Path::new("/a.rs"));
        assert_eq!(inc[0].anchor.as_deref(), Some("create"));
        assert_eq!(inc[1].anchor, None);
        assert_eq!(inc[2].anchor, None);
    }
}
