"""Install janus-rt: the `janus_rt` namespace is mapped from the top-level folders."""

import re
from pathlib import Path

from setuptools import find_packages, setup

# the version's one home is runtime/version.py, read as text: importing janus_rt here would need torch
VERSION = re.search(r'^__version__ = "([^"]+)"$', Path("runtime/version.py").read_text(encoding="utf-8"), re.M).group(1)
ROOTS = {"janus_rt": "runtime", "janus_rt.export": "export", "janus_rt.bench": "bench"}
# every folder with an __init__.py under a root is a subpackage (janus_rt.engine, janus_rt.serve, ...)
PACKAGES = [name for root, folder in ROOTS.items() for name in [root] + [f"{root}.{sub}" for sub in find_packages(folder)]]
# janus_rt.kernels is kernels/, reached through the link runtime/kernels -> ../kernels. kernels/ has no __init__.py
# (a namespace package inside janus_rt): a regular package named `kernels` at the repo root would shadow PyPI's
# `kernels` (a dependency of transformers) whenever the root is on sys.path (`python -m pytest`, `python -c`).
# Reached through the link, editable installs find it too (setuptools' editable finder does not map a package
# without __init__.py that sits outside its parent's folder).
PACKAGES.append("janus_rt.kernels")

setup(
    name="janus-rt",
    version=VERSION,
    description="Compiled, low-latency inference runtime for DeepSeek's Janus / Janus-Pro models",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=ROOTS,
    package_data={"janus_rt.serve": ["playground.html"],  # the web playground `janus-rt serve` answers at GET /
                  "janus_rt.toy": ["checkpoint/*"]},  # the toy checkpoint trained here (`--model toy`, `janus-rt demo`)
    install_requires=[
        "torch>=2.5",  # SDPA enable_gqa
        "triton>=3.0; platform_system == 'Linux'",
        "numpy>=1.24",
        "safetensors>=0.4",
        "tokenizers>=0.19",
        "pillow>=10.0",
        "tqdm>=4.60",
    ],
    extras_require={
        "export": ["onnx>=1.16", "onnxscript>=0.1", "onnxruntime>=1.18"],
        "trt": ["tensorrt>=10.0"],
        "hub": ["huggingface_hub>=0.23"],
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "prometheus-client>=0.20", "httpx>=0.27"],
        # `janus-rt serve --ray`: replicas behind Ray Serve's proxy (tested with 2.60; ingress from a builder function)
        "ray": ["ray[serve]>=2.60", "fastapi>=0.110", "uvicorn>=0.29", "prometheus-client>=0.20", "httpx>=0.27"],
        # tests: transformers is the parity oracle; the export tests run ONNX Runtime on the CPU; the server's
        # OpenAI compatibility is tested with the official SDK, its OpenAPI document with schemathesis, the web
        # playground with Playwright driving Debian's chromium (.ci/run installs it; never `playwright install`)
        "dev": ["pytest>=8", "hypothesis>=6.100", "transformers>=4.54", "onnx>=1.16", "onnxscript>=0.1",
                "onnxruntime>=1.18", "fastapi>=0.110", "uvicorn>=0.29", "prometheus-client>=0.20", "httpx>=0.27",
                "ray[serve]>=2.60", "openai>=1.40", "schemathesis>=4.0", "playwright>=1.40"],
    },
    # the command starts in a module outside the package, so Ctrl-C while torch imports is caught too (janus_rt_entry.py)
    py_modules=["janus_rt_entry"],
    entry_points={"console_scripts": ["janus-rt=janus_rt_entry:main"]},
)
