"""
files.py: the small file helpers every script shares: writes that are atomic (a killed run never leaves a
half-written file that looks valid), JSON records, and a file's sha256.
"""
import hashlib
import json
import os


def write_atomic(path, write):
    """Write through a temp file and rename, so a killed run never leaves a half-written file that looks valid."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_json(path):
    """A JSON file we wrote, or {} if it is unreadable (a stage whose record is unreadable is simply redone)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def write_json(path, obj):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
    write_atomic(path, write)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
