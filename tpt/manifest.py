"""manifest.json: what a run did (args, model, versions, timings), written beside its outputs."""
import datetime
import functools
import os
import platform
import sys

from tpt.io import read_json, write_json

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "vllm", "wandb", "tpt")


def package_versions():
    """Installed versions of the packages that change results (None where absent)."""
    return dict(_package_versions())


def _normal(name):
    return name.lower().replace("-", "_").replace(".", "_")


@functools.lru_cache(maxsize=None)  # looked up once per process, however many manifests it writes
def _package_versions():
    # pip records every install as <name>-<version>.dist-info on sys.path: reading the folder names is a
    # few milliseconds, where importlib.metadata costs ~60 ms of imports (a fifth of evmath.py's budget).
    # Anything else (eggs) still goes through importlib.metadata.
    found, eggs = {}, set()
    for folder in sys.path:
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".dist-info") and "-" in entry:
                name, version = entry[:-len(".dist-info")].split("-", 1)
                found.setdefault(_normal(name), version)
            elif entry.endswith((".egg-info", ".egg-link", ".egg")):
                eggs.add(_normal(entry.split("-", 1)[0].rsplit(".", 1)[0]))
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        out[name] = found.get(_normal(name))
        if out[name] is None and _normal(name) in eggs:
            import importlib.metadata
            try:
                out[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                pass
    if out["tpt"] is None:
        from tpt import __version__
        out["tpt"] = __version__
    return out


def write_manifest(folder, flags, filename="manifest.json", **fields):
    """Write folder/<filename> with the script, its args, package versions and any extra fields.

    Stages that write into another stage's folder (evmath.py into the samples folder) use their own filename.
    """
    record = {
        "script": os.path.basename(sys.argv[0]),
        "argv": sys.argv[1:],
        "args": dict(flags),
        "versions": package_versions(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(fields)
    path = os.path.join(folder, filename)
    write_json(path, record)
    return path


def read_manifest(folder, filename="manifest.json"):
    """The manifest of a finished run, or None when the folder has none."""
    path = os.path.join(folder, filename)
    return read_json(path) if os.path.isfile(path) else None
