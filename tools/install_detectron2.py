#!/usr/bin/env python
"""Install Detectron2 into the running Python when none is importable.

An already importable Detectron2 (for example the official build from GitHub)
is kept as it is. Otherwise the package registry's ``pb1-detectron2==0.6``
source distribution, which holds Detectron2 v0.6's exact Python sources but
cannot build as shipped (its C++ sources are missing, and recent pip refuses
its metadata), is repackaged as a pure-Python wheel and installed. The few
incompatibilities of v0.6 with current numpy/Pillow are handled at run time by
``maskrcnnpp.compat``; nothing in Detectron2 is edited.
"""
import argparse
import hashlib
import html.parser
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import urllib.parse
import urllib.request

SDIST_PROJECT = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"

# pip's documented default for --index-url, used when nothing else is configured.
DEFAULT_INDEX_URL = "https://pypi.org/simple"

# Detectron2 v0.6's own runtime requirements, less the build-only and
# optional ones (black, hydra, pydot, future) that it imports lazily.
RUNTIME_REQUIREMENTS = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1",
    # detectron2.model_zoo imports pkg_resources, which setuptools 81 removed.
    "setuptools<81",
]


def pip_index_urls():
    """Index URLs pip is configured with, the primary one first.

    Read with public means only: ``pip config list`` (pip's configuration
    files), then the ``PIP_INDEX_URL`` / ``PIP_EXTRA_INDEX_URL`` environment
    variables, which take precedence as they do for pip itself.
    """
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    primary, extra = None, []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if key.endswith("index-url") and not key.endswith("extra-index-url"):
            primary = value
        elif key.endswith("extra-index-url"):
            extra += value.split()
    primary = os.environ.get("PIP_INDEX_URL", primary)
    extra = os.environ.get("PIP_EXTRA_INDEX_URL", " ".join(extra)).split()
    return [primary or DEFAULT_INDEX_URL] + extra


class _LinkParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def find_sdist_url():
    """The sdist's URL, found on a PEP 503 simple page of pip's indexes."""
    filename = f"{SDIST_PROJECT}-{SDIST_VERSION}.tar.gz"
    tried = []
    for index in pip_index_urls():
        page = index.rstrip("/") + f"/{SDIST_PROJECT}/"
        try:
            with urllib.request.urlopen(page, timeout=60) as response:
                text = response.read().decode("utf-8", "replace")
        except Exception as e:  # an unreachable or local index without the project
            tried.append(f"{page} ({e.__class__.__name__})")
            continue
        parser = _LinkParser()
        parser.feed(text)
        for href in parser.links:
            if urllib.parse.urlsplit(href).path.endswith("/" + filename):
                return urllib.parse.urljoin(page, href)
        tried.append(f"{page} (no {filename})")
    raise SystemExit(
        f"error: could not find {filename} on any pip index. Tried:\n  " + "\n  ".join(tried)
    )


def download(url, dest):
    with urllib.request.urlopen(url, timeout=300) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f)
    digest = hashlib.sha256(open(dest, "rb").read()).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(
            f"error: {dest} has sha256 {digest}, expected {SDIST_SHA256}; refusing to install it"
        )


def build_pure_python_tree(sdist, workdir):
    """Unpack only the ``detectron2`` package and write a minimal pyproject."""
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/detectron2/" in m.name and m.isfile()]
        tar.extractall(workdir, members=members, filter="data")
    top = os.path.join(workdir, f"{SDIST_PROJECT}-{SDIST_VERSION}")
    requirements = ",\n".join(f'    "{r}"' for r in RUNTIME_REQUIREMENTS)
    with open(os.path.join(top, "pyproject.toml"), "w") as f:
        f.write(
            textwrap.dedent(
                f"""\
                [build-system]
                requires = ["setuptools>=61,<81"]
                build-backend = "setuptools.build_meta"

                [project]
                name = "detectron2"
                version = "{SDIST_VERSION}"
                description = "Detectron2 v0.6, pure-Python build (no detectron2._C)"
                requires-python = ">=3.7"
                dependencies = [
                {requirements}
                ]

                [tool.setuptools.packages.find]
                include = ["detectron2*"]

                [tool.setuptools.package-data]
                "detectron2.model_zoo" = ["configs/**/*.yaml", "configs/**/*.py"]
                """
            )
        )
    return top


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--force", action="store_true", help="install even if a Detectron2 is importable"
    )
    parser.add_argument(
        "--wheel-dir", help="build the pure-Python wheel into this folder instead of installing it "
        "(to carry to a machine without a package registry)"
    )
    args = parser.parse_args(argv)

    if importlib.util.find_spec("detectron2") is not None and not (args.force or args.wheel_dir):
        import detectron2

        print(f"Detectron2 {detectron2.__version__} is already importable "
              f"from {os.path.dirname(detectron2.__file__)}; keeping it.")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        url = find_sdist_url()
        sdist = os.path.join(tmp, os.path.basename(urllib.parse.urlsplit(url).path))
        print(f"Downloading {os.path.basename(sdist)}")
        download(url, sdist)
        tree = build_pure_python_tree(sdist, tmp)
        if args.wheel_dir:
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", args.wheel_dir, tree], check=True)
            print(f"Built the pure-Python Detectron2 v0.6 wheel in {args.wheel_dir}.")
            return 0
        subprocess.run([sys.executable, "-m", "pip", "install", tree], check=True)
    print("Installed the pure-Python Detectron2 v0.6.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
