#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# Renders the reference page that the kernel's ynl-gen-rst.py wrote for the
# family (proto/spec/my_genl.rst) as an HTML fragment that a book page
# includes: `cargo xtask book` runs it with the venv of
# xtask/ynl-requirements.txt (docutils):
#
#   rst-to-html.py proto/spec/my_genl.rst target/rosetta/ynl-book/my_genl.html
#
# The kernel renders these pages with Sphinx; the one Sphinx-only thing in
# them is the :ref: role, rendered here as a link to the label's section,
# named by the label's last word ("my_genl-attribute-set-my_genl" -> my_genl).
# Its headings start at <h3>, under the including page's <h2>.
# Any docutils warning fails the run. The fragment has no blank line, so
# that Markdown passes it through as one HTML block.

import sys

from docutils import nodes
from docutils.core import publish_parts
from docutils.parsers.rst import roles


def ref_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    label = nodes.fully_normalize_name(text)
    link = nodes.reference(rawtext, text.rsplit("-", 1)[-1],
                           refid=nodes.make_id(label))
    return [link], []


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: rst-to-html.py PAGE.rst OUT.html")
    roles.register_local_role("ref", ref_role)
    with open(sys.argv[1], encoding="utf-8") as f:
        source = f.read()
    parts = publish_parts(
        source,
        source_path=sys.argv[1],
        writer_name="html5",
        settings_overrides={
            "initial_header_level": 3,
            "report_level": 2,
            "halt_level": 2,
            "doctitle_xform": False,
            "embed_stylesheet": False,
            "toc_backlinks": "none",
        },
    )
    body = "\n".join(line for line in parts["body"].splitlines() if line.strip())
    # The contents' title links to the top of a whole document: here, none.
    body = body.replace('<a class="reference internal" href="#top">Contents</a>',
                        "Contents")
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write('<div class="ynl-reference">\n' + body + "\n</div>\n")


if __name__ == "__main__":
    main()
