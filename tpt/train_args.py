"""Train's flags: TRL's own dataclasses, as trl/scripts/sft.py parses them, with the paper's defaults.

sft_math.py parses (ScriptArguments, TrainConfig, ModelArguments) with trl.TrlParser, so every SFTConfig,
TrainingArguments and ModelConfig flag works and `--config recipe.yaml` sets any of them. TrainConfig and
ModelArguments only change defaults (and the help of the flags whose meaning TPT changes); --warmup_ratio, which
transformers 5 no longer has, is the one training flag added. Each flag is defined once.

Importing this module imports trl (seconds): import it inside functions. TrainConfig lives in the package, not in
the script, because the Trainer pickles it into every checkpoint (training_args.bin).
"""
import math
from dataclasses import dataclass, field

from trl import ModelConfig, SFTConfig

from tpt.device import DTYPES
from tpt.prompt import TEMPLATES


@dataclass
class ScriptArguments:
    """TPT's own inputs: the trace files and what happens around training."""

    train_traces: str = field(metadata={"help": "kept traces {idt|id, question, solution, solnum} (JSON/JSONL), "
                                        "make_json.py --train_traces", "aliases": ["--train_data_path"]})
    eval_traces: str | None = field(
        default=None, metadata={"help": "held-out traces for eval loss; no question may also be in train",
                                "aliases": ["--eval_data_path"]})
    template: str = field(
        default="tpt", metadata={"help": f"prompt wording, as Think used it: one of {sorted(TEMPLATES)} or a string "
                                 "holding {question}"})
    wandb_project: str | None = field(default=None, metadata={"help": "else $WANDB_PROJECT, else 'tpt'"})
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "keep OUTPUT_DIR.work/ (checkpoints) once the model folder is complete"})


@dataclass
class TrainConfig(SFTConfig):
    """SFTConfig with the paper's optimisation and TPT's folders, intervals and length rule."""

    output_dir: str = field(
        default="out/sft", metadata={"help": "the model folder to write (replaced when the run finishes); "
                                     "checkpoints go to OUTPUT_DIR.work/"})
    learning_rate: float = field(default=1e-6, metadata={"help": "peak learning rate (the paper's)"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "passes over the train traces"})
    per_device_train_batch_size: int = field(default=2, metadata={"help": "traces per micro-batch per process"})
    per_device_eval_batch_size: int = field(
        default=8, metadata={"help": "traces per eval batch per process (no gradients: larger than the train batch)"})
    gradient_accumulation_steps: int = field(default=4, metadata={"help": "micro-batches per optimizer step"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "any transformers scheduler name"})
    warmup_ratio: float | None = field(
        default=0.1, metadata={"help": "fraction of the optimizer steps spent warming up (1.0 = the whole run); "
                               "ignored when --warmup_steps is set above 0"})
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 autocast over the weights (--dtype); default: on where a GPU "
                                "supports it or the CPU has bf16 matrix units (tpt.device.cpu_has_bf16), else off"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory"})
    train_sampling_strategy: str = field(
        default="group_by_length", metadata={"help": "group_by_length: padded batches of traces of similar length "
                                             "(fastest here, bench_train.py); random: random order"})
    include_num_input_tokens_seen: str | None = field(
        default=None, metadata={"help": "default: real tokens of all processes (all when --padding_free, else "
                                "non_padding)"})
    eval_strategy: str = field(default="steps", metadata={"help": "'steps' (off without eval traces), 'epoch', 'no'"})
    eval_steps: float | None = field(
        default=0.25, metadata={"help": "eval loss every N optimizer steps; below 1: a fraction of the run (a run "
                                "too short for two steps between evaluations evaluates once, at its end)"})
    save_steps: float = field(
        default=0.25, metadata={"help": "checkpoint into OUTPUT_DIR.work/ every N steps; below 1: a fraction of the run"})
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept (and the best one)"})
    report_to: str | None = field(
        default="wandb", metadata={"help": "wandb needs a login, WANDB_API_KEY or WANDB_MODE=offline; or none"})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "continue a killed run: a checkpoint folder, or 'last' for the newest in "
                                "OUTPUT_DIR.work/"})
    max_length: int | None = field(
        default=1600, metadata={"help": "traces longer than this many tokens are left out, never truncated "
                                "(truncation would cut the end-of-turn token and teach the model not to stop)"})

    def __post_init__(self):
        import torch

        # Without an accelerator, say so: only then does accelerate run torchrun's ranks as MULTI_CPU (gloo)
        # rather than as independent single-process runs.
        if not torch.accelerator.is_available():
            self.use_cpu = True
        if self.bf16 is None:
            from tpt.device import auto_dtype

            # The same rule as Think's --dtype auto: autocast to bf16 where the matrix units take it (a GPU that
            # supports it, a CPU with AVX-512 BF16 or AMX), float32 compute elsewhere. Weights stay float32.
            self.bf16 = auto_dtype("cuda" if torch.cuda.is_available() else "cpu") == "bfloat16"
        if self.include_num_input_tokens_seen is None:
            # Padding-free rows have no attention mask; "non_padding" would then drop every token equal to the pad
            # id, which is often the end-of-turn token.
            self.include_num_input_tokens_seen = "all" if self.padding_free else "non_padding"
        super().__post_init__()

    def get_warmup_steps(self, num_training_steps):
        # transformers 5 reads a warmup_steps of 1.0 as one step; a ratio of 1.0 here means every step.
        if self.warmup_steps > 0 or self.warmup_ratio is None:
            return super().get_warmup_steps(num_training_steps)
        return math.ceil(num_training_steps * self.warmup_ratio)


@dataclass
class ModelArguments(ModelConfig):
    """ModelConfig with TPT's embedded model, float32 master weights and LoRA on every linear layer."""

    model_name_or_path: str | None = field(
        default="smollm2-135m", metadata={"help": "embedded alias, hub id or local folder"})
    dtype: str | None = field(
        default=None, metadata={
            "help": "dtype of the weights. Default: float32 for full fine-tuning (with --bf16 autocast on GPUs); "
            "the compute dtype (bfloat16 under --bf16) for a LoRA base, which never changes. bfloat16 weights keep "
            "8 significant bits: an AdamW step moves a weight by about the learning rate, and at lr 1e-6 that is "
            "below half a bf16 step for any weight above ~2.5e-4 in size, so most updates round away",
            "choices": list(DTYPES)})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "attention kernel (eager, sdpa, flash_attention_2, ...); default: eager "
                                "where the model config soft-caps attention logits (Gemma-2), else sdpa"})
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: ["all-linear"], metadata={"help": "module names, or all-linear"})
