"""
files.py: the small file helpers every script shares: writes that are atomic (a killed run never leaves a
half-written file that looks valid), folders made with a one-line error, JSON records and logs, a lock (one writer per
run directory), a file's sha256; and the --help layout, whole-number flags and h:mm:ss times of the command-line
scripts.
"""
import argparse
import contextlib
import hashlib
import json
import math
import os
from pathlib import Path


def write_atomic(path, write):
    """Write through a temp file and rename, so a killed run never leaves a half-written file that looks valid."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        with open(tmp, "rb+") as f:   # on disk before the rename: a power cut never leaves an empty file behind
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def make_dir(path, flag):
    """mkdir -p path, or one line naming the flag to change (the path is a file, or not writable). -> Path(path)"""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"cannot make the folder {path} ({e.strerror}): pass a writable {flag}") from None
    return Path(path)


def read_json(path):
    """A JSON file we wrote, or {} if it is unreadable (a stage whose record is unreadable is simply redone)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def read_log(path):
    """log.jsonl -> its events, [] without one; a line that does not parse (a run killed while writing it) is skipped,
    as train.py --resume skips it; bytes that are not UTF-8 are read as U+FFFD (a line they break no longer parses)."""
    events = []
    for line in Path(path).read_text(errors="replace").splitlines() if Path(path).exists() else []:
        with contextlib.suppress(ValueError):
            if isinstance(event := json.loads(line), dict):
                events.append(event)
    return events


def json_safe(x):
    """Numbers as strict JSON has them: numpy scalars as Python ones, NaN and infinities (a fitted constant that
    overflows, an interval without bootstrap) as null, which every JSON parser reads."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if hasattr(x, "item") and hasattr(x, "dtype"):          # a numpy (or 0-d torch) scalar
        x = x.item()
    return None if isinstance(x, float) and not math.isfinite(x) else x


def write_json(path, obj):
    """obj as strict JSON (json_safe), written atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(json_safe(obj), f, indent=1, allow_nan=False)
            f.write("\n")
    write_atomic(path, write)


def try_lock(path):
    """An exclusive lock on the file at path (created if missing), held while the returned open file stays open and
    dropped by the operating system when the process ends, however it ends; None if another process holds it.
    POSIX only: elsewhere the file is returned unlocked."""
    f = open(path, "w")
    try:
        import fcntl
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        pass
    except OSError:
        f.close()
        return None
    return f


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class HelpFormat(argparse.RawDescriptionHelpFormatter):
    """--help: the script's docstring as written, then each flag with its default (unless its text gives it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False or action.default in ("", argparse.SUPPRESS) or (
                "default:" in text or "(default " in text):   # (not "0: torch's default", not "default | ...")
            return text
        return f"{text} (default: %(default)s)"


def hms(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def whole_number(text):   # an int flag that also takes 2.1e9 (not 2.5)
    try:
        return int(text)
    except ValueError:
        pass
    try:
        if float(text).is_integer():
            return int(float(text))
    except (ValueError, OverflowError):
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (1000000, 1e6, 2.1e9)")
