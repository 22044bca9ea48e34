"""One reader and one writer for every file TPT touches.

Question files: a JSON list of {idt, question, solution, solnum} (the original TPT format; its kept-trace
files say `id` instead of `idt`), a JSONL of the same, or GSM8K's own JSONL lines {question, answer} where the
answer ends with `#### N` (idt = row index). Sample files: e0.json ... e{N-1}.json, each a JSON list of
{qnum, question, solution} with optional extras (finish_reason, num_tokens).

A question's id is `idt` in question files and `qnum` in sample files (a sample's qnum is its question's idt):
two names for one thing, because they are the original TPT's file formats, which ours must read and write.

Bad input raises DataError with one line naming the file and the record; scripts turn it into a non-zero exit.
Every write goes to a temp file in the same folder and is renamed into place, so no reader ever sees half a file.
"""
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile


class DataError(Exception):
    """Bad input: the message is one line naming the file and the record."""


def write_json(path, obj, indent=4):
    """Write obj as JSON atomically (temp file in the same folder, then rename)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    write_text(path, text + "\n")


def write_text(path, text):
    """Write text atomically (temp file in the same folder, then rename)."""
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temp path beside `path` to write; on success it is renamed to `path`, on failure removed.
    Every file TPT writes goes through here (write_json, write_text, the report's figures)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=f".tmp{ext}")  # savefig reads the extension
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file owner-only; give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def partial_folder(dest):
    """The hidden sibling a folder is written into before replace_folder moves it into place. A fixed name, so
    every rank of a multi-process launch writes into the same one."""
    parent, name = os.path.split(os.path.abspath(dest))
    return os.path.join(parent, f".{name}.partial")


def replace_folder(partial, dest):
    """Move a complete folder to dest, replacing whatever was there whole: a reader sees the old folder or the
    new one, never a mix."""
    parent, name = os.path.split(os.path.abspath(dest))
    old = os.path.join(parent, f".{name}.old")
    if os.path.exists(dest):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(partial, dest)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(dest):
    """Yield an empty folder to fill; on success it replaces dest (replace_folder), on failure it is removed."""
    partial = partial_folder(dest)
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    try:
        yield partial
        replace_folder(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def read_json(path):
    """Parse a JSON file; a missing file or malformed JSON is a DataError naming the file."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason})") from None


def sha256_file(path):
    """The hex sha256 of a file's bytes; a missing file is a DataError naming it."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths):
    """One hex sha256 for the contents of several files, in order: how a stage fingerprints its input files
    (their content, never their names)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def read_jsonl(path):
    """Parse a JSON-lines file into a list; a bad line is a DataError naming the file and line."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {lineno}: malformed JSON: {e.msg}") from None
    return records


def _read_records(path):
    """A JSON list or a JSONL file, judged by content rather than by the file's extension."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    if head.startswith("["):
        data = read_json(path)
    elif head.startswith("{"):
        data = read_jsonl(path)
    elif not head:
        raise DataError(f"{path}: empty file")
    else:
        raise DataError(f"{path}: expected a JSON list or JSON lines, found {head[:20]!r}")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, found {type(data).__name__}")
    return data


GSM8K_FINAL_RE = re.compile(r"####\s*(.+?)\s*$")


def gsm8k_final_number(answer):
    """The text after GSM8K's `#### ` line (kept as written, e.g. '2,125'), or None."""
    last = answer.strip().rsplit("\n", 1)[-1]
    m = GSM8K_FINAL_RE.search(last)
    return m.group(1) if m else None


def _check_field(path, i, rec, name, types):
    if name not in rec:
        raise DataError(f"{path}: record {i}: missing field '{name}'")
    if not isinstance(rec[name], types) or isinstance(rec[name], bool):
        want = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise DataError(f"{path}: record {i}: field '{name}' must be {want}, got {type(rec[name]).__name__}")


def read_questions(path, unique_idt=True):
    """Read a question file into a list of {idt, question, solution, solnum} dicts (extra keys kept).

    Accepts TPT JSON (idt or id), JSONL of the same, and GSM8K {question, answer} lines.
    Raises DataError on a missing file, malformed JSON, a missing or mistyped field, or a duplicate idt.
    Kept-trace files may hold several traces of one question: read them with unique_idt=False.
    """
    return parse_questions(_read_records(path), path, unique_idt)


def parse_questions(data, path, unique_idt=True):
    """read_questions for records already in memory (e.g. a hub dataset split); `path` names them in errors."""
    out = []
    seen = {}
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: record {i}: expected an object, got {type(rec).__name__}")
        rec = dict(rec)
        if "idt" not in rec and "id" in rec:
            rec["idt"] = rec.pop("id")
        if "answer" in rec and "solnum" not in rec and "solution" not in rec:
            # GSM8K's own format: the row index is the idt, the `#### N` line the answer.
            _check_field(path, i, rec, "answer", str)
            final = gsm8k_final_number(rec["answer"])
            if final is None:
                raise DataError(f"{path}: record {i}: answer has no '#### N' final line")
            rec = {"idt": rec.get("idt", i), "question": rec["question"], "solution": rec["answer"], "solnum": final}
        _check_field(path, i, rec, "idt", (int, str))
        _check_field(path, i, rec, "question", str)
        _check_field(path, i, rec, "solution", str)
        _check_field(path, i, rec, "solnum", (str, int, float))
        rec["solnum"] = str(rec["solnum"])
        if unique_idt and rec["idt"] in seen:
            raise DataError(f"{path}: record {i}: duplicate idt {rec['idt']!r} (first at record {seen[rec['idt']]})")
        seen[rec["idt"]] = i
        out.append(rec)
    return out


def sample_paths(folder, num_samples):
    """The sample files e0.json ... e{N-1}.json of one run folder."""
    return [os.path.join(folder, f"e{i}.json") for i in range(num_samples)]


def _samples_look_valid(data, questions):
    """True when every record is well-formed (and matches the questions one to one), checked with C-speed
    passes over the whole file; on False the record-by-record checks find and name the bad record."""
    if set(map(type, data)) - {dict}:
        return False
    try:
        qnums = [r["qnum"] for r in data]
        solutions = [r["solution"] for r in data]
    except KeyError:
        return False
    if set(map(type, qnums)) - {int, str} or set(map(type, solutions)) - {str}:
        return False
    if set(map(type, [r.get("question", "") for r in data])) - {str}:
        return False
    if questions is None:
        return True
    unique = set(qnums)
    return len(unique) == len(data) == len(questions) and unique == {q["idt"] for q in questions}


def read_samples(path, questions=None):
    """Read one e{i}.json: a list of {qnum, question, solution} (extras kept).

    With `questions` (from read_questions), every qnum must be one of their idts and the file must hold
    exactly one record per question.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: sample file not found")
    return check_samples(path, read_json(path), questions)


def check_samples(path, data, questions=None):
    """Validate the parsed records of sample file `path` as read_samples does; returns them."""
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of samples, found {type(data).__name__}")
    if _samples_look_valid(data, questions):  # one fast pass; the slow one below names the bad record
        return data
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: record {i}: expected an object, got {type(rec).__name__}")
        _check_field(path, i, rec, "qnum", (int, str))
        _check_field(path, i, rec, "solution", str)
        if "question" in rec and not isinstance(rec["question"], str):
            raise DataError(f"{path}: record {i}: field 'question' must be str")
    if questions is not None:
        idts = {q["idt"] for q in questions}
        seen = set()
        for i, rec in enumerate(data):
            if rec["qnum"] not in idts:
                raise DataError(f"{path}: record {i}: qnum {rec['qnum']!r} is not an idt of the question file")
            if rec["qnum"] in seen:
                raise DataError(f"{path}: record {i}: qnum {rec['qnum']!r} appears twice")
            seen.add(rec["qnum"])
        if len(data) != len(questions):
            raise DataError(f"{path}: has {len(data)} records, expected {len(questions)} (one per question)")
    return data


_WS_RE = re.compile(r"\s+")


def normalize_text(text):
    """Lower-case, whitespace-folded text: the key for overlap checks and duplicate traces."""
    return _WS_RE.sub(" ", text).strip().lower()
