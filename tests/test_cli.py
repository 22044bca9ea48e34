"""Every top-level script answers --help with exit 0 (found by glob, so new scripts are covered), quickly,
because heavy imports live inside functions. Runtime budget: < 20 s.
"""
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT

SCRIPTS = sorted(p.name for p in ROOT.glob("*.py"))


def test_there_are_scripts():
    assert {"evmath.py", "make_json.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_zero(script):
    result = subprocess.run([PYTHON, str(ROOT / script), "--help"], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


# The recipes users type: the original TPT README's commands (its evmath line reads `--answer_path data gsm8ktrain`,
# a typo no parser can take, so it is written with the path it means) and this README's before the flags were named
# once. Each must parse to the one name of every artifact.
RECIPES = [
    # the original README: Think
    ("gen_synth.py", "--model_name google/gemma-2-2b-it --max_model_len 1500 --num_samples 5 --math "
     "data/gsm8ktrain.json --output_dir samples/math_train/2b",
     {"questions": "data/gsm8ktrain.json", "samples_dir": "samples/math_train/2b", "num_samples": 5}),
    # the original README: Prune, scoring
    ("evmath.py", "--samples_dir samples/math_train/ft --answer_path data/gsm8ktrain.json --num_samples 5",
     {"questions": "data/gsm8ktrain.json", "samples_dir": "samples/math_train/ft", "num_samples": 5}),
    # the original README: Prune, split
    ("make_json.py", "--input samples/math_train/correct_answers.json --train_output data/next/train2k.json "
     "--eval_output data/next/evnext.json --train_size 2000",
     {"kept": ["samples/math_train/correct_answers.json"], "train_traces": "data/next/train2k.json",
      "eval_traces": "data/next/evnext.json", "train_size": 2000}),
    # the original README: Train
    ("sft_math.py", "--model_name_or_path google/gemma-2-2b-it --train_data_path data/next/train2k.json "
     "--eval_data_path data/next/evnext.json --learning_rate 1e-6 --output_dir gemma-tpt",
     {"train_traces": "data/next/train2k.json", "eval_traces": "data/next/evnext.json", "output_dir": "gemma-tpt"}),
    # this README before: Eval: the original gen_eval.py's own names
    ("gen_eval.py", "--model_name gemma-tpt --math data/gsm8ktest500.json --numsamples 10 --temperature 0.7 "
     "--outputdir samples/math_eval/round1",
     {"questions": "data/gsm8ktest500.json", "samples_dir": "samples/math_eval/round1", "num_samples": 10}),
    # this README before: the leakage check
    ("make_data.py", "check --train data/gsm8ktrain.json --test data/gsm8ktest.json",
     {"train_questions": "data/gsm8ktrain.json", "test_questions": "data/gsm8ktest.json"}),
    # the one names
    ("gen_synth.py", "--questions q.json --samples_dir s --num_samples 3",
     {"questions": "q.json", "samples_dir": "s", "num_samples": 3}),
    ("sft_math.py", "--train_traces t.json --eval_traces e.json", {"train_traces": "t.json", "eval_traces": "e.json"}),
]


@pytest.mark.parametrize("script, command, expected", RECIPES, ids=[f"{s}-{i}" for i, (s, _, _) in enumerate(RECIPES)])
def test_recipes_parse_to_one_name_per_artifact(script, command, expected):
    import importlib.util

    spec = importlib.util.spec_from_file_location(script[:-3], ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = module.build_parser()
    if script == "sft_math.py":
        parsed = {k: v for part in parser.parse_args_and_config(command.split()) for k, v in vars(part).items()}
    else:
        parsed = vars(parser.parse_args(command.split()))
    assert {k: parsed[k] for k in expected} == expected


def test_the_package_docstring_names_every_module():
    # tpt/__init__.py is the package's table of contents: a module added or removed is named there too.
    import tpt

    modules = {p.stem for p in (ROOT / "tpt").rglob("*.py") if p.stem != "__init__"}
    named = set(tpt.__doc__.replace(",", " ").replace("(", " ").replace(":", " ").split())
    assert modules - named == set()
