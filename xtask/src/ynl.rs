//! `cargo xtask spec [--check]`: the YNL spec of the generic netlink family
//! (`proto/spec/my_genl.yaml`) and what the kernel's own YNL tools make of
//! it, from `tools/net/ynl/` of the pinned kernel tree:
//!
//! - the spec is parsed and validated by the tools' own library
//!   (`lib/nlspec.py`) against the tree's `Documentation/netlink/genetlink.yaml`;
//! - `ynl-gen-c.py --mode uapi --header` writes the C uAPI header that the
//!   C module and the C clients include (`c/include/linux/my_genl.h`);
//! - `ynl-gen-rst.py` writes the family's reference page
//!   (`proto/spec/my_genl.rst`), which the book renders with docutils.
//!
//! Both outputs are committed, as upstream commits its generated headers:
//! `cargo xtask spec` writes them, `--check` (run by `cargo xtask test`)
//! fails when the spec no longer generates them byte for byte. Why
//! committed rather than generated at build time: `proto/spec/README.md`.
//!
//! In the VM, [`guest_env`] puts the tools' command line on PATH as `ynl`.

use crate::kernel::Kernel;
use crate::util::{output, root, run, step};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The spec, relative to the workspace root.
pub const SPEC: &str = "proto/spec/my_genl.yaml";

/// What the spec generates: (tool, its arguments before `--spec`, the
/// committed output relative to the workspace root).
const GENERATED: &[(&str, &[&str], &str)] = &[
    (
        "ynl-gen-c.py",
        &["--mode", "uapi", "--header"],
        "c/include/linux/my_genl.h",
    ),
    ("ynl-gen-rst.py", &[], "proto/spec/my_genl.rst"),
];

/// The kernel's YNL tools and the Python that runs them.
pub struct Tools {
    /// The venv's python3, with the tools' requirements.
    pub python: PathBuf,
    /// `tools/net/ynl/` of the pinned tree.
    pub dir: PathBuf,
    /// `Documentation/netlink/` of the pinned tree: the schemas, and the
    /// kernel's own specs in `specs/`.
    pub netlink_docs: PathBuf,
}

impl Tools {
    pub fn of(kernel: &Kernel) -> Result<Tools> {
        let python = crate::deps::ensure_ynl_python()?.join("python3");
        let dir = kernel.tree.join("tools/net/ynl");
        let netlink_docs = kernel.tree.join("Documentation/netlink");
        for need in [dir.join("cli.py"), netlink_docs.join("genetlink.yaml")] {
            if !need.is_file() {
                bail!(
                    "{} is missing from the kernel tree: delete {} for xtask to unpack it again",
                    need.display(),
                    kernel.tree.display()
                );
            }
        }
        // The guest sees the tree read-only: compile the tools' library
        // here, or every run in the VM compiles it again (seconds under TCG).
        if !dir.join("lib/__pycache__").is_dir() {
            run(Command::new(&python)
                .args(["-m", "compileall", "-q"])
                .arg(dir.join("lib")))?;
        }
        Ok(Tools {
            python,
            dir,
            netlink_docs,
        })
    }

    /// `python3 tools/net/ynl/<tool>`.
    fn tool(&self, tool: &str) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(self.dir.join(tool));
        cmd
    }
}

/// `cargo xtask spec [--check]`.
pub fn run_spec(check: bool) -> Result<i32> {
    let kernel = crate::kernel::ensure(crate::kernel::Flavour::Normal)?;
    generate(&Tools::of(&kernel)?, !check)?;
    Ok(0)
}

/// Validates the spec, generates the header and the reference page, and
/// writes them (`write`) or fails unless the committed ones are the same.
pub fn generate(tools: &Tools, write: bool) -> Result<()> {
    let spec = root().join(SPEC);
    let schema = tools.netlink_docs.join("genetlink.yaml");
    step(format!(
        "validating {SPEC} against the pinned kernel's Documentation/netlink/genetlink.yaml (with its tools/net/ynl/lib/nlspec.py)"
    ));
    run(Command::new(&tools.python)
        .arg("-c")
        .arg("import sys; sys.path.insert(0, sys.argv[1]); from lib import SpecFamily; SpecFamily(sys.argv[2], sys.argv[3])")
        .arg(&tools.dir)
        .arg(&spec)
        .arg(&schema))
    .with_context(|| format!("{SPEC} is not a valid `genetlink` spec (the error is above)"))?;

    // ynl-gen-c.py finds the schema at `../<protocol>.yaml` from the spec's
    // directory, and names the spec in the header by its path below the
    // nearest directory with a MAINTAINERS file, as in the kernel tree: a
    // stage with the same layout gives both ("proto/spec/my_genl.yaml").
    let stage = root().join("target/rosetta/ynl");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("proto/spec"))?;
    std::fs::create_dir_all(stage.join("out"))?;
    std::fs::write(stage.join("MAINTAINERS"), "")?;
    std::os::unix::fs::symlink(&schema, stage.join("proto/genetlink.yaml"))?;
    let staged_spec = stage.join(SPEC);
    std::os::unix::fs::symlink(&spec, &staged_spec)?;

    let mut stale = Vec::new();
    for (tool, args, committed) in GENERATED {
        let name = Path::new(committed).file_name().expect("a file name");
        let fresh = stage.join("out").join(name);
        let mut cmd = tools.tool(tool);
        cmd.args(*args);
        // ynl-gen-c.py takes --spec and -o, ynl-gen-rst.py -i and -o.
        cmd.arg(if *tool == "ynl-gen-c.py" {
            "--spec"
        } else {
            "-i"
        })
        .arg(&staged_spec)
        .arg("-o")
        .arg(&fresh);
        run(&mut cmd).with_context(|| format!("{tool} failed on {SPEC}"))?;
        let target = root().join(committed);
        let new = std::fs::read(&fresh)?;
        if std::fs::read(&target).ok().as_deref() == Some(new.as_slice()) {
            continue;
        }
        if write {
            std::fs::create_dir_all(target.parent().expect("a parent"))?;
            std::fs::write(&target, &new)?;
            step(format!("wrote {committed} ({tool})"));
        } else {
            let diff = Command::new("diff")
                .arg("-u")
                .arg(&target)
                .arg(&fresh)
                .output()?;
            eprintln!("{}", String::from_utf8_lossy(&diff.stdout));
            stale.push(*committed);
        }
    }
    if !stale.is_empty() {
        bail!(
            "{} {} not what {SPEC} generates (the differences are above): run `cargo xtask spec` and commit the result",
            stale.join(" and "),
            if stale.len() == 1 { "is" } else { "are" }
        );
    }
    if !write {
        step(format!(
            "{} are what {SPEC} generates",
            GENERATED
                .iter()
                .map(|g| g.2)
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }
    Ok(())
}

/// Renders the committed reference page (`proto/spec/my_genl.rst`, RST)
/// as an HTML fragment for the book, with docutils (no kernel tree
/// needed); returns its path, `target/rosetta/ynl-book/my_genl.html`.
pub fn render_reference() -> Result<PathBuf> {
    let python = crate::deps::ensure_ynl_python()?.join("python3");
    let out = root().join("target/rosetta/ynl-book/my_genl.html");
    std::fs::create_dir_all(out.parent().expect("a parent"))?;
    output(
        Command::new(python)
            .arg(root().join("xtask/rst-to-html.py"))
            .arg(root().join("proto/spec/my_genl.rst"))
            .arg(&out),
    )
    .context("rendering proto/spec/my_genl.rst for the book")?;
    Ok(out)
}

/// The guest script's lines that put the pinned kernel's YNL command line
/// on PATH as `ynl` (a wrapper in `work`, the VM run's directory: `python3
/// cli.py`, validating the spec against the tree's `genetlink.yaml` unless
/// the command says `--schema` or `--no-schema` itself), and export
/// `ROSETTA_YNL_DOCS`, the tree's `Documentation/netlink` (schemas, and the
/// kernel's own specs in `specs/`).
pub fn guest_env(kernel: &Kernel, work: &Path) -> Result<String> {
    let tools = Tools::of(kernel)?;
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin)?;
    let q = |p: &Path| crate::vm::sh_quote(&p.to_string_lossy());
    let wrapper = bin.join("ynl");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# The pinned kernel's tools/net/ynl/cli.py (written by `cargo xtask vm`).\nexec {} {} --schema {} \"$@\"\n",
            q(&tools.python),
            q(&tools.dir.join("cli.py")),
            q(&tools.netlink_docs.join("genetlink.yaml")),
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    Ok(format!(
        "export PATH={}:\"$PATH\"\nexport ROSETTA_YNL_DOCS={}\n",
        q(&bin),
        q(&tools.netlink_docs)
    ))
}
