"""The image's root file tree: time stamps clamped for reproducibility, its manifest and its digest."""

import glob
import hashlib
import os
import stat
import subprocess


def read_list(path):
    """The non-comment, non-blank lines of a list file."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


def source_date_epoch(checkout):
    """The last commit's time: the same checkout gives the same time stamps in the image."""
    done = subprocess.run(["git", "-C", checkout, "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "0"


def clamp_times(root, epoch):
    """No file in the tree is newer than ``epoch`` (what the build ran at leaves no trace)."""
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            if os.lstat(path).st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)
    if os.stat(root).st_mtime > epoch:
        os.utime(root, (epoch, epoch))


def digest(root):
    """sha256 over every path's type, mode, owner, mtime and content (or link target), in sorted order."""
    whole = hashlib.sha256()
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = hashlib.file_digest(f, "sha256").hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = ""
            rel = os.path.relpath(path, root)
            whole.update(f"{rel}\0{st.st_mode:o}\0{st.st_uid}:{st.st_gid}\0{int(st.st_mtime)}\0{content}\n"
                         .encode("utf-8", "surrogateescape"))
    return whole.hexdigest()


def debian_packages(root):
    done = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package} ${Version}\n"],
                          check=True, capture_output=True, text=True)
    return dict(sorted(line.split(" ", 1) for line in done.stdout.splitlines() if line))


def python_distributions(root, venv="opt/phonehome/venv"):
    found = {}
    for meta in glob.glob(os.path.join(root, venv, "lib", "python3*", "site-packages", "*.dist-info", "METADATA")):
        fields = {}
        with open(meta, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key, value.strip())
        found[fields.get("Name", "?")] = fields.get("Version", "?")
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def finish(root, epoch):
    """Clamp the tree's times and describe it: packages, Python distributions and the tree's digest."""
    clamp_times(root, epoch)
    return {"source_date_epoch": epoch, "debian": debian_packages(root),
            "python": python_distributions(root), "tree_sha256": digest(root)}
