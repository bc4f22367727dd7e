"""The Python side of the image: phonehome's own wheel and the pinned arm64 wheels it runs with.

Wheels come from PyPI for CPython 3.11 on aarch64 (Debian bookworm's Python). lgpio, gpiozero's pin
library for Debian's kernel, has no arm64 wheel there: it is built once from its sdist inside a throwaway
arm64 Debian (mmdebstrap, qemu-user) and kept in the cache like the others.
"""

import glob
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64", "linux_aarch64")
BUILT_FROM_SOURCE = ("lgpio",)
BUILDER_PACKAGES = ("python3-dev", "python3-pip", "python3-setuptools", "python3-wheel", "gcc", "swig")


def pins(path):
    """(name, version) for each ``name==version`` line of a requirements file."""
    found = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, _, version = line.partition("==")
                if not version:
                    raise SystemExit(f"image: {path}: {line!r} is not pinned; write it as name==version")
                found.append((name.strip(), version.strip()))
    return found


def collect(checkout, build, cache, say):
    """Fill build/wheels with every wheel the image's venv installs; return that directory."""
    out = os.path.join(build, "wheels")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    say("phonehome wheel from the checkout")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, checkout], check=True)
    store = os.path.join(cache, "wheels")
    os.makedirs(store, exist_ok=True)
    wanted = pins(os.path.join(HERE, "requirements.txt"))
    binary = [f"{n}=={v}" for n, v in wanted if n not in BUILT_FROM_SOURCE]
    say(f"{len(binary)} pinned arm64 wheels from PyPI (kept in {store})")
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    *platform_args, "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                    "--abi", "abi3", "--abi", "none", "-d", store, *binary], check=True)
    for name, version in wanted:
        if name in BUILT_FROM_SOURCE:
            build_from_source(name, version, build, store, say)
    for name, version in wanted:
        matches = _wheels_of(store, name, version)
        if not matches:
            raise SystemExit(f"image: no arm64 wheel of {name}=={version} in {store}")
        for path in matches:
            shutil.copy2(path, out)
    return out


def _wheels_of(store, name, version):
    stem = name.replace("-", "_").replace(".", "_").lower()
    return [p for p in glob.glob(os.path.join(store, "*.whl"))
            if os.path.basename(p).lower().startswith(f"{stem}-{version}-")]


def build_from_source(name, version, build, store, say):
    if _wheels_of(store, name, version):
        return
    say(f"{name}=={version}: no arm64 wheel on PyPI; building it in an arm64 Debian (once; then cached)")
    sdists = os.path.join(build, "sdist")
    shutil.rmtree(sdists, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
                    "-d", sdists, f"{name}=={version}"], check=True)
    sdist = glob.glob(os.path.join(sdists, "*"))[0]
    # PYPI=1 makes lgpio's setup.py link its C library statically, so the wheel needs nothing else installed.
    script = (f"cd /tmp/src && PYPI=1 python3 -m pip wheel --no-deps --no-build-isolation "
              f"-w /tmp/out {os.path.basename(sdist)}")
    subprocess.run(["mmdebstrap", "--mode=root", "--arch=arm64", "--variant=apt",
                    "--include=" + ",".join(BUILDER_PACKAGES), "--format=null",
                    "--customize-hook=mkdir -p \"$1\"/tmp/src \"$1\"/tmp/out",
                    f"--customize-hook=copy-in {sdist} /tmp/src",
                    f"--customize-hook=chroot \"$1\" sh -c '{script}'",
                    f"--customize-hook=sync-out /tmp/out {store}",
                    "bookworm", "/dev/null", "deb http://deb.debian.org/debian bookworm main"], check=True)
