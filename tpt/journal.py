"""The journal of a sampling run: .journal.jsonl in its folder, append-only.

Its first line is a header, {fingerprint, backend, seed_scheme}; every later line is one finished question with its samples,
{index, qnum, seconds, samples}, appended a batch at a time, flushed and fsync'd, so a killed run loses at most
the batch it was sampling. A run started again with the same arguments reads the journal back and samples only
what it lacks; the journal goes once the run's manifest is written.
"""
import json
import os

from tpt.backends import SEED_SCHEME
from tpt.io import DataError
from tpt.stage import changed_settings, refusal

JOURNAL = ".journal.jsonl"


def resume_journal(path, stage, backend):
    """{question index: journal line} of the questions already sampled into the journal at `path`; a journal
    that does not exist yet (or is empty) is started with its header, which holds the run's Stage (tpt/stage.py)
    fingerprint.

    A torn last line (a kill in the middle of a write) is cut off so appends start clean. A journal written
    with another fingerprint (compared as the Stage compares a finished run's) or backend is a DataError saying
    which.
    """
    done = _read_journal(path, stage, backend)
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        append_journal(path, [{"fingerprint": stage.fingerprint, "backend": backend, "seed_scheme": SEED_SCHEME}])
    return done


def _read_journal(path, stage, backend):
    if not os.path.isfile(path):
        return {}
    with open(path, "rb") as f:
        data = f.read()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(complete))
    lines = complete.decode("utf-8").splitlines()
    if not lines:
        return {}
    try:
        header = json.loads(lines[0])
        records = [json.loads(line) for line in lines[1:]]
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: damaged journal ({e.msg}); remove the folder to start over") from None
    if header.get("seed_scheme") != SEED_SCHEME:  # its samples were seeded by their place in a call
        raise DataError(f"{os.path.dirname(path)}: holds an unfinished run started by an older TPT, whose seeds "
                        "depended on each question's place in a batch; remove the folder to sample it again")
    stored = stage.comparable(header.get("fingerprint") or {})
    if stored != stage.fingerprint:
        raise refusal(os.path.dirname(path), "an unfinished run", changed_settings(stored, stage.fingerprint))
    if header.get("backend") != backend:
        raise DataError(f"{os.path.dirname(path)}: the unfinished run used backend {header.get('backend')!r}, "
                        f"this one would use {backend!r}; pass --backend {header.get('backend')} to resume")
    return {rec["index"]: rec for rec in records}


def append_journal(path, lines):
    """Append these lines and wait until they are on disk: a kill after this returns loses none of them."""
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
