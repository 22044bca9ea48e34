"""Model resolution: the embedded alias becomes a plain float32 safetensors folder that trains and saves like
any model; other names pass through. Budget ~1 minute on 2 cores (one fresh GGUF conversion, one save/load)."""
import json
import os
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT
from tpt.models import EMBEDDED_MODELS, resolve_model

pytestmark = pytest.mark.slow  # a model loaded in every test (pytest -m 'not slow' leaves them out)


@pytest.mark.parametrize("name", [
    "google/gemma-2-2b-it",   # a hub id is left for from_pretrained to fetch
    "out/round1/model",       # a local folder (existing or not) is used as it is
    "/abs/path/model",        # likewise an absolute path
])
def test_other_names_pass_through(name):
    assert resolve_model(name) == name


def test_alias_resolves_to_a_plain_folder():
    path = resolve_model("smollm2-135m")
    assert resolve_model("smollm2-135m") == path  # cached: the second call converts nothing
    names = set(os.listdir(path))
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    config = json.loads(open(os.path.join(path, "config.json")).read())
    assert "quantization_config" not in config
    assert config["dtype"] == "float32"


def test_alias_folder_round_trips_through_save_and_load(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(path)
    # what made the GGUF-loaded model untrainable and unsaveable: a quantizer attached to it
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)
    assert model.generation_config.eos_token_id == 2  # <|im_end|>: replies stop at the end of the turn
    model.save_pretrained(tmp_path / "copy")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.save_pretrained(tmp_path / "copy")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "copy")
    original, copied = model.state_dict(), again.state_dict()
    assert original.keys() == copied.keys()
    assert all(torch.equal(original[k], copied[k]) for k in original)
    chat = AutoTokenizer.from_pretrained(tmp_path / "copy").apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.startswith("<|im_start|>") and chat.endswith("<|im_start|>assistant\n")


def test_fresh_conversion_is_atomic_and_shared_by_concurrent_callers(tmp_path):
    # Two processes ask for the alias in an empty cache at once: one converts, the other waits for it.
    env = dict(os.environ, TPT_CACHE=str(tmp_path))
    code = "from tpt.models import resolve_model; print(resolve_model('smollm2-135m'))"
    procs = [subprocess.Popen([PYTHON, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.strip().splitlines()[-1] == str(tmp_path / "smollm2-135m")
    # nothing half-written is left beside the finished folder
    assert sorted(os.listdir(tmp_path)) == ["smollm2-135m", "smollm2-135m.lock"]
    assert os.path.isfile(tmp_path / "smollm2-135m" / "model.safetensors")
    assert set(EMBEDDED_MODELS) == {"smollm2-135m"}
