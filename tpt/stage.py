"""The finished-run protocol every stage follows, and the only place that prints `skip:`, `redo:` and `error:`.

A stage's run is described by a Stage: the folder it writes, the manifest that marks it finished there, the
settings that change its result, its input files (hashed by content, never by name), its code (the modules whose
source is hashed: the scorer, the data-making code) and what a folder holding a run made otherwise does:

    Think, Eval, Train   REFUSE   hours of sampling or training: one error line naming what changed, nothing
                                  touched; the user picks another folder or removes this one
    Prune, data          REDO     seconds, deterministic: one `redo:` line naming what changed, then done again

A script builds its Stage once, asks `finished()` before any work (the same run: one `skip:` line and the stage
returns), and calls `finish(flags, ...)` last, which writes the manifest with the fingerprint. So the loop can
call every stage every time and each decides from its own folder.

    stage = Stage("scoring", folder, EVMATH_MANIFEST, settings, inputs={"answer": path}, code=SCORER, on_change=REDO)
    if stage.finished():
        return
    ...                                   # the work
    stage.finish(vars(args), summary=summary)
"""
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import sys

from tpt.io import DataError, sha256_file, sha256_files
from tpt.manifest import read_manifest, write_manifest

REFUSE, REDO = "refuse", "redo"

# The manifest each stage writes last. Think, Eval and Train own their folder; Prune and make_data write beside
# the files they read or make, under their own name.
MANIFEST = "manifest.json"  # Think, Eval, Train
EVMATH_MANIFEST = "evmath_manifest.json"  # evmath.py's, in the samples folder it scored
MAKE_JSON_MANIFEST = "make_json_manifest.json"  # make_json.py's, beside train.json
MAKE_DATA_MANIFEST = "make_data_manifest.json"  # make_data.py's, beside the question files
MANIFESTS = (EVMATH_MANIFEST, MAKE_JSON_MANIFEST, MANIFEST)  # what the report copies from a round's folders

# The code whose change changes a result that was computed from the same files: how answers are read and scored
# (Prune, and Eval's scores), how kept traces are split, how question files are made.
SCORER = ("tpt.extract", "tpt.metrics", "tpt.scoring")
SPLITTER = ("tpt.split",)
DATA_MAKER = ("tpt.data",)


@functools.lru_cache(maxsize=None)
def code_sha256(modules):
    """One hex sha256 over the source of these modules (a tuple of module names), in order."""
    digest = hashlib.sha256()
    for name in modules:
        with open(importlib.util.find_spec(name).origin, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def changed_settings(stored, current):
    """'name: old -> new, ...' for every setting two fingerprints disagree on ('' when they agree)."""
    stored, current = stored or {}, current or {}
    keys = sorted(set(stored) | set(current))
    return ", ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in keys if stored.get(k) != current.get(k))


def skip(folder, why):
    """The one `skip:` line: why there is nothing to do in this folder."""
    print(f"skip: {folder}: {why}", flush=True)


def redo(folder, why):
    """The one `redo:` line: what is in this folder is done again, because of `why`."""
    print(f"redo: {folder}: {why}", flush=True)


def fail(message, code=2):
    """The one `error:` line (a DataError's message), then a non-zero exit; scripts call it on DataError."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def refusal(folder, what, changes):
    """The DataError a REFUSE stage raises for a folder holding `what` made otherwise (its `changes`)."""
    return DataError(f"{folder}: holds {what} made with other settings, inputs or code ({changes}); use another "
                     "output folder, or remove this one to redo it")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage's run in one folder. settings: JSON values by flag name; inputs: {role: path or [paths]}, hashed
    by content as `<role>_sha256` (None for an absent one); code: module names hashed as `code_sha256`."""

    name: str  # what the lines call it: Think, Eval, Train, scoring, split, data
    folder: str
    manifest: str
    settings: dict
    inputs: dict = dataclasses.field(default_factory=dict)
    code: tuple = ()
    on_change: str = REFUSE
    # Settings this code added, each at the value that does what the code before it did: a stored fingerprint
    # without one matches at that value, so a folder finished before the setting existed still counts.
    introduced: dict = dataclasses.field(default_factory=dict)
    # Settings no longer fingerprinted (they change nothing the folder holds): a stored value is not compared.
    ignored: tuple = ()

    @functools.cached_property
    def fingerprint(self):
        """What must match for the folder's finished run to be this run, JSON-normalised as manifest.json holds it."""
        record = dict(self.settings)
        for role, paths in self.inputs.items():
            if paths is None:
                record[f"{role}_sha256"] = None
            else:
                record[f"{role}_sha256"] = sha256_file(paths) if isinstance(paths, str) else sha256_files(paths)
        if self.code:
            record["code_sha256"] = code_sha256(tuple(self.code))
        return json.loads(json.dumps(dict(sorted(record.items())), default=str))

    def finished(self, announce=True):
        """The manifest of this very run when the folder holds it finished (one `skip:` line when `announce`);
        None when there is work to do. A folder holding a run made otherwise is refused (DataError) by a REFUSE
        stage; a REDO stage says `redo:` and removes the old manifest, so a redo killed half-way is redone again,
        never vouched for by the old one."""
        manifest = read_manifest(self.folder, self.manifest)
        if manifest is None:
            return None
        stored = self.comparable(manifest.get("fingerprint") if isinstance(manifest, dict) else None)
        if stored == self.fingerprint:
            if announce:
                self.say_skip()
            return manifest
        changes = changed_settings(stored, self.fingerprint) if stored else "it recorded none: an older TPT made it"
        if self.on_change == REFUSE:
            raise refusal(self.folder, "a finished run", changes)
        if announce:
            redo(self.folder, f"{self.manifest} was made with other settings, inputs or code ({changes})")
        self.forget()
        return None

    def comparable(self, stored):
        """A stored fingerprint as this code would have written it for the same run (introduced, ignored)."""
        if not isinstance(stored, dict):
            return stored
        stored = {k: v for k, v in stored.items() if k not in self.ignored}
        for name, value in self.introduced.items():
            if name not in stored and self.fingerprint.get(name) == value:
                stored[name] = value
        return dict(sorted(stored.items()))

    def say_skip(self):
        """The `skip:` line of a folder holding this very run."""
        skip(self.folder, f"{self.name} finished, same settings, inputs and code; nothing to do")

    def forget(self):
        """Remove the folder's manifest before its outputs are replaced."""
        path = os.path.join(self.folder, self.manifest)
        if os.path.isfile(path):
            os.remove(path)

    def finish(self, flags, folder=None, **fields):
        """Write the manifest last (into `folder`, default the stage's: Train writes into its partial folder),
        with the script's flags (a dict), the fingerprint and `fields`. Returns its path."""
        os.makedirs(folder or self.folder, exist_ok=True)
        return write_manifest(folder or self.folder, flags, filename=self.manifest, fingerprint=self.fingerprint,
                              **fields)
