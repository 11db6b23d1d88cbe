"""Execute a notebook headless (nbclient) and print what each cell showed, as text.

Mirrors JupyterLab's default of not saving widget state, so the executed copy written
to build/ is what a user's saved notebook would hold.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}"
    return output.get("data", {}).get("text/plain", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, help="where to save the executed notebook")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    nb = nbformat.read(args.notebook, as_version=4)
    if not os.environ.get("DASHSCOPE_API_KEY"):
        print(
            "DASHSCOPE_API_KEY is not set: the notebook uses the built-in emulator "
            "(answers are emulated, not from Qwen).\n",
            flush=True,
        )
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(args.notebook.parent)}},
    )
    client.execute()
    out = args.out or Path("build") / args.notebook.name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    if not args.quiet:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            print(textwrap.indent(cell.source, ">>> ", lambda _: True))
            for output in cell.get("outputs", []):
                text = text_of(output).rstrip()
                if text:
                    print(textwrap.indent(text, "    "))
            print()
        print(f"Executed notebook saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
