"""Create the project's virtual environment with pip, even where Debian's python3-venv is missing.

Debian ships ``ensurepip`` in a separate package (python3-venv). Without it,
``python3 -m venv`` fails; this script then makes the venv without pip and
installs pip from its wheel on PyPI, which is the only place it downloads from.
"""

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
import venv


def main(target):
    python = os.path.join(target, "bin", "python")
    if os.path.exists(python) and subprocess.run([python, "-m", "pip", "--version"],
                                                 capture_output=True).returncode == 0:
        return 0
    try:
        venv.create(target, with_pip=True, clear=True)
        return 0
    except subprocess.CalledProcessError:
        print("mkvenv: ensurepip is not available (Debian's python3-venv is not installed); "
              "installing pip from PyPI instead", file=sys.stderr)
    venv.create(target, with_pip=False, clear=True)
    with urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=60) as r:
        release = json.load(r)
    wheel = next(u for u in release["urls"] if u["packagetype"] == "bdist_wheel")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, wheel["filename"])
        urllib.request.urlretrieve(wheel["url"], path)
        # A pip wheel can run itself: python pip.whl/pip install pip
        subprocess.run([python, os.path.join(path, "pip"), "install", "--quiet", path], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".venv"))
