"""manifest.json: what a run did (args, model, versions, timings), written beside its outputs."""
import datetime
import importlib.metadata
import os
import platform
import sys

from tpt.io import read_json, write_json

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "vllm", "wandb", "tpt")


def package_versions():
    """Installed versions of the packages that change results (None where absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    if out["tpt"] is None:
        from tpt import __version__
        out["tpt"] = __version__
    return out


def write_manifest(folder, args, filename="manifest.json", **fields):
    """Write folder/<filename> with the script, its args, package versions and any extra fields.

    Stages that write into another stage's folder (evmath.py into the samples folder) use their own filename.
    """
    record = {
        "script": os.path.basename(sys.argv[0]),
        "argv": sys.argv[1:],
        "args": vars(args) if hasattr(args, "__dict__") else dict(args),
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
