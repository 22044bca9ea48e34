"""Think and Eval on a Ray cluster: --data_parallel_size engine replicas, each a Ray actor holding one backend
(vLLM or transformers) on its own GPUs (or CPUs), fed the run's batches as they free up; the driver journals each
batch as it comes back and writes the files exactly as on one machine (tpt/generate.py).

    --ray auto          join the cluster this machine belongs to (`ray start` ran here, or RAY_ADDRESS)
    --ray HOST:PORT     join the cluster whose head listens there
    --ray local         start a cluster on this machine for this run (gone when the run ends)

Replicas are Ray actors, not a Ray Data pipeline (the engine vLLM's docs point to for batch inference), because:
  * a replica runs exactly the batches one process would (tpt.generate.plan_batches), one journal entry each, so
    the e-files are byte for byte those of a one-process run: a sample depends on (seed, question, sample index)
    only, and an engine's float results depend on the batch a row is in too (neither vLLM nor our transformers
    loop is batch-invariant). Ray Data re-blocks rows as its executor sees fit;
  * the driver already owns streaming, resume and the files: it keeps two batches in flight per replica and
    journals whichever finishes first, which is all Ray Data's streaming executor would do here, without turning
    every sample list into Arrow rows and back;
  * ray.data.llm drives vLLM only; this drives either backend;
  * a replica's death is handled by Ray Core either way (Ray Data's actor pools use the same actor restarts):
    an actor that dies (its process killed, its node lost) is started again by Ray, which loads the model again
    and runs the batches it held again, and the driver gets each batch's result once.
Question files are a few MB and fit in the driver; what Ray Data adds (reading from object storage, datasets
larger than memory, autoscaling) is not needed.

Each replica asks Ray for --tensor_parallel_size GPUs when the cluster has GPUs (so Ray sets its
CUDA_VISIBLE_DEVICES), else an equal share of the cluster's CPUs. The tpt package travels to the cluster with the
job (runtime_env py_modules); the model must be readable at the same path on every node, or be a hub id.
"""
import os
import socket
import time

from tpt.backends import BackendError
from tpt.io import DataError

MAX_RESTARTS = 3  # a replica that keeps dying (out of memory at every start) ends the run instead of looping
IN_FLIGHT = 2  # batches queued per replica, so it starts the next one while the driver journals the last


def _one_line(error):
    return " ".join(str(error).split())[:500]


def _reachable(address):
    """None when something listens at HOST:PORT, else why not (ray.init would wait minutes on a dead address)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return "not HOST:PORT, auto or local"
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        return _one_line(e) or type(e).__name__
    return None


def connect(address):
    """Join the cluster at `address` (HOST:PORT or auto) or start one ('local'); a DataError line when it cannot.
    Call before anything is written."""
    try:
        import ray
    except ImportError:
        raise DataError(f"--ray {address}: ray is not installed (pip install -r requirements.txt)") from None
    if ray.is_initialized():
        return
    if address not in ("auto", "local"):
        why = _reachable(address)
        if why is not None:
            raise DataError(f"--ray {address}: no Ray cluster there ({why})")
    import tpt

    try:
        # A cluster of our own listens on loopback only; the tpt package travels with the job to every node.
        ray.init(address=address, include_dashboard=False, logging_level="WARNING",
                 runtime_env={"py_modules": [os.path.dirname(tpt.__file__)]},
                 **({"_node_ip_address": "127.0.0.1"} if address == "local" else {}))
    except Exception as e:  # ConnectionError (no cluster), ValueError (a bad address), RuntimeError
        raise DataError(f"--ray {address}: {_one_line(e)}") from None


def cluster_backend(name):
    """'vllm' or 'hf' for --backend `name` on the cluster: auto picks vLLM when it is installed (here: the nodes
    share this environment) and the cluster has GPUs; vllm needs only the install here, the GPUs are the
    cluster's."""
    import importlib.util

    import ray

    installed = importlib.util.find_spec("vllm") is not None
    if name == "vllm" and not installed:
        raise DataError("--backend vllm: vllm is not installed (pip install -r requirements-vllm.txt)")
    if name != "auto":
        return name
    return "vllm" if installed and ray.cluster_resources().get("GPU", 0) > 0 else "hf"


def replica_resources(backend_name, config):
    """Ray resources of one replica: its GPUs where the cluster has them, else an equal share of the CPUs; a
    DataError when the cluster cannot hold --data_parallel_size of them."""
    import ray

    from tpt.backends import vllm_status

    total = ray.cluster_resources()
    replicas = config.data_parallel_size
    # vLLM's CPU build runs its engine on CPUs, like the transformers backend without GPUs.
    vllm_on_cpu = backend_name == "vllm" and vllm_status()[0] == "cpu"
    if (total.get("GPU", 0) > 0 or backend_name == "vllm") and not vllm_on_cpu:
        gpus = config.tensor_parallel_size if backend_name == "vllm" else 1
        if total.get("GPU", 0) < replicas * gpus:
            raise DataError(f"--data_parallel_size {replicas} replicas of {gpus} GPU(s) need {replicas * gpus} GPUs; "
                            f"the Ray cluster has {int(total.get('GPU', 0))}")
        return {"num_gpus": gpus, "num_cpus": 1}
    node_cpus = max(int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"])
    cpus = max(1, min(node_cpus, int(total.get("CPU", 0)) // replicas))
    if replicas * cpus > total.get("CPU", 0):
        raise DataError(f"--data_parallel_size {replicas} replicas of {cpus} CPU(s) need {replicas * cpus} CPUs; "
                        f"the Ray cluster has {int(total.get('CPU', 0))} (and no GPU)")
    return {"num_gpus": 0, "num_cpus": cpus}


class Replica:
    """One engine on its own resources (a Ray actor): the backend tpt.generate.load_sampler builds, loaded once."""

    def __init__(self, backend_name, model_path, config):
        from tpt.generate import load_sampler, load_tokenizer

        tokenizer = load_tokenizer(model_path, config.trust_remote_code)
        self.sampler = load_sampler(backend_name, model_path, tokenizer, config)
        self.config = config

    def generate(self, prompts, seeds):
        """(per prompt its samples, seconds it took, where it ran: 'pid P on HOST'): one batch of the run."""
        import ray

        from tpt.generate import call_sampling

        t0 = time.time()
        results = self.sampler.generate(prompts, call_sampling(self.config), seeds)
        return results, time.time() - t0, f"pid {os.getpid()} on {ray.util.get_node_ip_address()}"


class ReplicaPool:
    """config.data_parallel_size Replica actors on the cluster `connect` joined."""

    def __init__(self, backend_name, model_path, config, resources):
        """`resources`: replica_resources(backend_name, config)."""
        import ray

        options = resources | {"max_restarts": MAX_RESTARTS, "max_task_retries": -1}
        actor = ray.remote(Replica).options(**options)
        self.name = backend_name
        self.replicas = [actor.remote(backend_name, model_path, config) for _ in range(config.data_parallel_size)]

    def batches(self, prompts, seeds, todo):
        """Yield (question indices, per question its samples, seconds) for every batch in `todo` (pairs of batch
        index and question indices), in the order they finish; each exactly once, whatever replica died meanwhile."""
        import ray

        queue = list(todo)
        running = {}  # ObjectRef -> (replica index, question indices)
        load = [0] * len(self.replicas)
        where = [None] * len(self.replicas)

        def submit():
            while queue and min(load) < IN_FLIGHT:
                r = load.index(min(load))
                _, batch = queue.pop(0)
                ref = self.replicas[r].generate.remote([prompts[i] for i in batch], [seeds[i] for i in batch])
                running[ref] = (r, batch)
                load[r] += 1

        submit()
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            r, batch = running.pop(ref)
            load[r] -= 1
            try:
                results, seconds, process = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                raise BackendError(f"Ray replica {r} died more than {MAX_RESTARTS} times or could not start: "
                                   f"{_one_line(e)}; finished batches are journaled, run again to resume") from None
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(e.cause, Exception) else e
                raise BackendError(f"Ray replica {r}: {_one_line(cause)}") from None
            if process != where[r]:  # its first answer, or its first since Ray restarted it
                print(f"replica {r}: {process}" + (" (restarted by Ray)" if where[r] else ""), flush=True)
                where[r] = process
            submit()
            yield batch, results, seconds

    def close(self):
        import ray

        for replica in self.replicas:
            ray.kill(replica, no_restart=True)
        self.replicas = []
