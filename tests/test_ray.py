"""Think and Eval on a real local Ray cluster (tpt/ray_sampling.py): gen_synth.py / gen_eval.py as real
subprocesses with --ray, two transformers replicas of the embedded model on CPU, 12 GSM8K test questions x 2
samples of 8 tokens in 6 batches.

Every run is compared with one reference run in one process (no Ray) with the same seed: the e-files must be the
same bytes (filecmp, nothing dropped), Eval's records the same but for Think's `origin`. One cluster serves the
module (started here on 127.0.0.1 with 2 CPUs, so one CPU a replica); `--ray local` starts its own.
The reference runs on one thread, as each replica does (Ray sets OMP_NUM_THREADS to a replica's 1 CPU): two
OpenMP threads on cores shared by other jobs took 347 s instead of ~40 s (its e-files were the same bytes with
two threads too, checked by hand). Budget ~5 min on 2 shared cores (load average 10).
"""
import filecmp
import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.conftest import GSM8K, PYTHON, ROOT, free_port

ray = pytest.importorskip("ray", reason="ray is a test dependency (requirements.txt)")

SYNTH = [PYTHON, str(ROOT / "gen_synth.py")]
EVAL = [PYTHON, str(ROOT / "gen_eval.py")]
# --batch_size 1 with 2 samples: 2 questions a batch (tpt.backends.questions_per_call), 6 batches of work.
ARGS = ["--questions", str(GSM8K / "test.jsonl"), "--limit", "12", "--max_tokens", "8", "--backend", "hf",
        "--batch_size", "1", "--seed", "3"]
FILES = ["e0.json", "e1.json"]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900, **kw)


def same_files(folder, reference):
    """The e-files of folder against the reference's: byte for byte, all of them."""
    match, mismatch, errors = filecmp.cmpfiles(reference, folder, FILES, shallow=False)
    return match == FILES and not mismatch and not errors


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster on this machine for the module; its address (HOST:PORT) is what --ray joins."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    proc = run(SYNTH + ARGS + ["--num_samples", "2", "--samples_dir", str(out)],
               env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_replicas_on_a_local_cluster_write_the_one_process_files(reference, tmp_path):
    out = tmp_path / "run"
    proc = run(SYNTH + ARGS + ["--num_samples", "2", "--samples_dir", str(out), "--ray", "local",
                               "--data_parallel_size", "2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert same_files(out, reference)
    # both replicas sampled, each on one CPU
    assert sorted(set(re.findall(r"^replica (\d): pid", proc.stdout, re.M))) == ["0", "1"], proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ray_replica_resources"]["num_cpus"] == 1 and manifest["sampled_questions"] == 12
    assert manifest["args"]["ray"] == "local" and "ray" not in manifest["fingerprint"]


@pytest.mark.slow
def test_a_replica_killed_mid_run_is_restarted_and_every_sample_written_once(cluster, reference, tmp_path):
    out = tmp_path / "run"
    with open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen(SYNTH + ARGS + ["--num_samples", "2", "--samples_dir", str(out), "--ray", cluster,
                                                "--data_parallel_size", "2"],
                                stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
        # The first replica to answer a batch holds another (two in flight each, six batches): kill it now.
        for line in proc.stdout:
            found = re.match(r"replica (\d): pid (\d+) on", line)
            if found:
                break
        killed, pid = found.groups()
        os.kill(int(pid), signal.SIGKILL)
        rest = proc.stdout.read()
        assert proc.wait(timeout=900) == 0, (tmp_path / "stderr").read_text()[-3000:]
    # Ray started it again in another process, which answered the batches the dead one held ...
    restarted = re.search(rf"^replica {killed}: pid (\d+) on .* \(restarted by Ray\)$", rest, re.M)
    assert restarted and restarted.group(1) != pid, rest
    # ... and each batch was journaled once (a second answer stops the run), every sample as one process samples it
    assert same_files(out, reference)
    assert json.loads((out / "manifest.json").read_text())["sampled_questions"] == 12


@pytest.mark.slow
def test_a_killed_driver_resumes_without_redoing_journaled_batches(cluster, reference, tmp_path):
    out = tmp_path / "run"
    cmd = SYNTH + ARGS + ["--num_samples", "2", "--samples_dir", str(out), "--ray", cluster, "--data_parallel_size", "2"]
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        journal = out / ".journal.jsonl"
        deadline = time.time() + 600
        # header + one batch (2 questions) journaled: the driver is killed with batches still out on replicas
        while not (journal.exists() and len(journal.read_text().splitlines()) >= 3) and proc.poll() is None:
            assert time.time() < deadline, "no batch journaled in 600 s"
            time.sleep(0.2)
        proc.kill()  # SIGKILL: its replicas die with it (Ray ends a job's actors with their driver)
        proc.wait()
    done = len(journal.read_text().splitlines()) - 1
    assert 2 <= done < 12
    again = run(cmd)
    assert again.returncode == 0, again.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_questions"] == done and manifest["sampled_questions"] == 12 - done
    assert same_files(out, reference) and not journal.exists()


@pytest.mark.slow
def test_eval_on_the_cluster_samples_what_think_samples(cluster, reference, tmp_path):
    # Same seed, temperature and questions: Eval's records are Think's but for `origin`, and they are scored.
    out = tmp_path / "eval"
    proc = run(EVAL + ARGS + ["--num_samples", "2", "--temperature", "0.8", "--samples_dir", str(out), "--ray", cluster,
                              "--data_parallel_size", "2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in FILES:
        think = [{k: v for k, v in r.items() if k != "origin"} for r in json.loads((reference / name).read_text())]
        assert json.loads((out / name).read_text()) == think
    assert (out / "scored.json").exists() and "pass@1" in proc.stdout


@pytest.mark.parametrize("flags, message", [
    # nothing listens there
    (["--ray", "127.0.0.1:{free}"], "error: --ray 127.0.0.1:{free}: no Ray cluster there ("),
    # not an address at all
    (["--ray", "cluster0"], "error: --ray cluster0: no Ray cluster there (not HOST:PORT, auto or local)"),
    # replicas without a cluster to put them on
    ([], "error: --data_parallel_size 2 runs replicas on a Ray cluster: add --ray local (this machine) or --ray auto"),
])
def test_replicas_with_no_cluster_are_one_line_and_nothing_written(tmp_path, flags, message):
    free = free_port()
    flags, message = [f.format(free=free) for f in flags], message.format(free=free)
    assert_one_line_and_nothing_written(tmp_path, flags + ["--data_parallel_size", "2"], message)


@pytest.mark.slow
def test_a_cluster_too_small_for_the_replicas_is_one_line_and_nothing_written(cluster, tmp_path):
    # the module's cluster has 2 CPUs and no GPU: 3 replicas could not all start (they would wait for ever)
    assert_one_line_and_nothing_written(tmp_path, ["--ray", cluster, "--data_parallel_size", "3"],
                                        "error: --data_parallel_size 3 replicas of 1 CPU(s) need 3 CPUs; "
                                        "the Ray cluster has 2")


def assert_one_line_and_nothing_written(tmp_path, flags, message):
    out = tmp_path / "run"
    proc = run(SYNTH + ARGS + ["--samples_dir", str(out)] + flags)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith(message), proc.stderr[-3000:]
    assert proc.stderr.strip().endswith(lines[0]) and not out.exists()
