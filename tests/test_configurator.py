"""Tests for configurator.py: overrides, type rules, config files, errors, --help."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import configurator

ROOT = Path(__file__).resolve().parent.parent  # the project folder


def settings(**extra):
    """A fresh globals dict like a script's, with a few non-setting globals."""
    g = {
        "__doc__": "Train a tiny GPT.\n\nMore details here.",
        "__file__": "/somewhere/train.py",
        "os": os,  # a module: not a setting
        "helper": lambda: 1,  # a function: not a setting
        "_private": 3,  # leading underscore: not a setting
        "out_dir": "out",
        "eval_interval": 2000,
        "learning_rate": 6e-4,
        "compile": True,
        "dtype": "float32",
        "wandb_run_name": "gpt2",
        "top_k": None,
    }
    g.update(extra)
    return g


def run(g, *argv, quiet=True):
    return configurator.configure(g, list(argv), quiet=quiet)


def expect_exit(capsys, g, *argv, code=1):
    with pytest.raises(SystemExit) as e:
        run(g, *argv)
    assert e.value.code == code
    return capsys.readouterr()


def test_override_parses_literals(capsys):
    g = settings()
    run(g, "--eval_interval=100", "--learning_rate=1e-3", "--compile=False", "--dtype=bfloat16",
        "--out_dir='out-x'", quiet=False)
    assert g["eval_interval"] == 100 and type(g["eval_interval"]) is int
    assert g["learning_rate"] == 1e-3
    assert g["compile"] is False
    assert g["dtype"] == "bfloat16"  # literal_eval fails -> raw string
    assert g["out_dir"] == "out-x"  # a quoted literal is unquoted
    out = capsys.readouterr().out
    assert "Overriding: learning_rate = 0.001" in out
    assert "Overriding: dtype = 'bfloat16'" in out


def test_quiet_prints_nothing(capsys):
    run(settings(), "--eval_interval=5", quiet=True)
    assert capsys.readouterr().out == ""


def test_int_may_become_float():
    g = settings()
    run(g, "--learning_rate=1")
    assert g["learning_rate"] == 1.0 and type(g["learning_rate"]) is float


def test_bool_is_not_int(capsys):
    err = expect_exit(capsys, settings(), "--eval_interval=True").err
    assert "'eval_interval' expects int, got True (bool)" in err
    err = expect_exit(capsys, settings(), "--compile=1").err
    assert "'compile' expects bool, got 1 (int)" in err
    err = expect_exit(capsys, settings(), "--learning_rate=False").err
    assert "'learning_rate' expects float (or int), got False (bool)" in err


def test_unknown_key_lists_valid_keys_and_exits_1(capsys):
    err = expect_exit(capsys, settings(), "--lerning_rate=1e-3").err
    assert "unknown key 'lerning_rate'" in err
    assert "did you mean 'learning_rate'?" in err
    assert "python train.py --help lists the settings" in err
    assert err.count("\n") == 1  # one line
    assert "_private" not in err and "helper" not in err and "os," not in err
    assert "Traceback" not in err


def test_unknown_key_without_close_match(capsys):
    err = expect_exit(capsys, settings(), "--zzz=1").err
    assert "unknown key 'zzz'" in err and "did you mean" not in err


def test_non_settings_are_not_keys(capsys):
    for arg in ("--os=1", "--helper=1", "--_private=1", "--__doc__=x"):
        assert "unknown key" in expect_exit(capsys, settings(), arg).err


def test_wrong_type_exits_1(capsys):
    err = expect_exit(capsys, settings(), "--eval_interval=abc").err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "key 'eval_interval' expects int, got 'abc' (str)" in err
    err = expect_exit(capsys, settings(), "--eval_interval=1.5").err
    assert "key 'eval_interval' expects int, got 1.5 (float)" in err
    err = expect_exit(capsys, settings(), "--compile=None").err
    assert "key 'compile' expects bool, got None (NoneType)" in err


def test_config_file_applied_in_order(tmp_path, capsys):
    a = tmp_path / "a.py"
    a.write_text("eval_interval = 10\nlearning_rate = 1\ndtype = 'float16'\n")
    b = tmp_path / "b.py"
    b.write_text("import math\n_tmp = 2\neval_interval = 20 * _tmp\n")
    g = settings()
    config = run(g, str(a), str(b), "--dtype=bfloat16", quiet=False)
    assert config["eval_interval"] == 40  # later file wins
    assert config["learning_rate"] == 1.0 and type(config["learning_rate"]) is float
    assert config["dtype"] == "bfloat16"  # --key beats files
    out = capsys.readouterr().out
    assert f"Overriding config with {a}:" in out
    assert "Overriding: eval_interval = 40" in out
    assert "Overriding: out_dir" not in out  # untouched settings are not reported


def test_config_file_wrong_type(tmp_path, capsys):
    f = tmp_path / "bad.py"
    f.write_text("compile = 0\n")
    err = expect_exit(capsys, settings(), str(f)).err
    assert f"{f}: key 'compile' expects bool, got 0 (int)" in err


def test_config_file_unknown_key(tmp_path, capsys):
    f = tmp_path / "x.py"
    f.write_text("learning_rate = 1e-3\nlerning_rate = 1e-3\n")
    err = expect_exit(capsys, settings(), str(f)).err
    assert f"{f} sets unknown key 'lerning_rate' (did you mean 'learning_rate'?)" in err
    assert "--help lists the settings" in err and err.count("\n") == 1


def test_missing_config_file(tmp_path, capsys):
    missing = tmp_path / "nope.py"
    err = expect_exit(capsys, settings(), str(missing)).err
    assert f"config file not found: {missing}" in err


def test_help_prints_every_key_with_default(capsys):
    out = expect_exit(capsys, settings(), "--eval_interval=1", "--help", code=0).out
    lines = out.splitlines()
    assert lines[0] == "usage: python train.py [config/file.py ...] [--key=value ...]"
    assert "Train a tiny GPT.\n\nMore details here." in out  # the script's docstring
    keys = ["out_dir", "eval_interval", "learning_rate", "compile", "dtype", "wandb_run_name", "top_k"]
    rows = [line for line in lines if " = " in line]
    assert [row.split()[0] for row in rows] == keys  # definition order
    assert len({row.index("=") for row in rows}) == 1  # aligned
    assert "  learning_rate  = 0.0006" in out and "  out_dir        = 'out'" in out
    assert "  top_k          = None" in out
    assert expect_exit(capsys, settings(), "-h", code=0).out == out


def test_returns_final_config():
    config = run(settings(), "--top_k=200", "--learning_rate=3e-4")
    assert config == {"out_dir": "out", "eval_interval": 2000, "learning_rate": 3e-4,
                      "compile": True, "dtype": "float32", "wandb_run_name": "gpt2", "top_k": 200}
    assert list(config)[:3] == ["out_dir", "eval_interval", "learning_rate"]  # definition order


def test_string_default_keeps_text():
    g = settings(note="")
    run(g, "--wandb_run_name=123", "--out_dir=1e3", "--note=None")
    assert g["wandb_run_name"] == "123"
    assert g["out_dir"] == "1e3"  # exactly as written, not '1000.0'
    assert g["note"] == "None"


def test_none_default_accepts_anything():
    for raw, value in [("200", 200), ("0.5", 0.5), ("True", True), ("abc", "abc"),
                       ("None", None), ("(1, 2)", (1, 2))]:
        g = settings(anything=None)
        run(g, f"--anything={raw}")
        assert g["anything"] == value and type(g["anything"]) is type(value)


def test_flag_without_value_errors(capsys):
    err = expect_exit(capsys, settings(), "--compile").err
    assert "'--compile' has no value; use --compile=True" in err


def test_unrecognized_argument_errors(capsys):
    assert "unrecognized argument '-x'" in expect_exit(capsys, settings(), "-x").err


def test_default_argv_is_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "--eval_interval=7"])
    assert configurator.configure(settings(), quiet=True)["eval_interval"] == 7


def test_script_bad_key_exits_1_without_traceback(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        '"""A tiny script."""\n'
        "batch_size = 12\n"
        "learning_rate = 6e-4\n"
        "import configurator\n"
        "config = configurator.configure(globals())\n"
        "print('CONFIG', config)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    ok = subprocess.run([sys.executable, str(script), "--batch_size=4"],
                        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "CONFIG {'batch_size': 4, 'learning_rate': 0.0006}" in ok.stdout
    bad = subprocess.run([sys.executable, str(script), "--batch_sise=4"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert "unknown key 'batch_sise' (did you mean 'batch_size'?)" in bad.stderr


SCRIPT = '''"""A tiny training script."""
# ---------------------------------------------------------------- settings
# I/O
out_dir = 'out'  # where the checkpoints go
eval_interval = 100  # evaluate every this many steps
# optimizer
learning_rate = 6e-4  # the peak
beta1 = 0.9
_private = 1  # not a setting
import configurator
config = configurator.configure(globals())
print('CONFIG', config)
later = 5  # set after configure(): not a setting
'''


def run_script(tmp_path, *args):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, cwd=tmp_path)


def test_read_settings_gives_defaults_comments_and_sections(tmp_path):
    (tmp_path / "s.py").write_text(SCRIPT)
    assert configurator.read_settings(tmp_path / "s.py") == [
        ("out_dir", "out", "where the checkpoints go", "I/O"),
        ("eval_interval", 100, "evaluate every this many steps", "I/O"),
        ("learning_rate", 6e-4, "the peak", "optimizer"),
        ("beta1", 0.9, "", "optimizer"),
    ]


def test_help_shows_each_settings_comment_under_its_section(tmp_path):
    p = run_script(tmp_path, "--help")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert "A tiny training script." in lines
    i = lines.index("I/O")
    assert lines[i + 1].split() == ["out_dir", "=", "'out'", "where", "the", "checkpoints", "go"]
    assert lines[i + 2].split()[:3] == ["eval_interval", "=", "100"] and lines[i + 2].endswith("evaluate every this many steps")
    assert lines[i + 3] == "" and lines[i + 4] == "optimizer"
    assert lines[i + 5].endswith("the peak") and lines[i + 6].split() == ["beta1", "=", "0.9"]
    assert lines[i + 1].index("where") == lines[i + 2].index("evaluate") == lines[i + 5].index("the peak")


def test_nanogpt_keys_are_accepted_with_a_note(tmp_path, capsys):
    p = run_script(tmp_path, "--device=cpu", "--compile=False", "--eval_interval=5")
    assert p.returncode == 0, p.stderr
    assert "CONFIG {'out_dir': 'out', 'eval_interval': 5, 'learning_rate': 0.0006, 'beta1': 0.9}" in p.stdout
    assert "note: --device is not needed here: JAX picks the device" in p.stderr
    assert "note: --compile is not needed here: jax.jit always compiles" in p.stderr
    cfg = tmp_path / "nano.py"
    cfg.write_text("device = 'cpu'\ncompile = False\neval_interval = 7\n")
    p = run_script(tmp_path, str(cfg))
    assert p.returncode == 0 and "'eval_interval': 7" in p.stdout and "sets 'device', which is not needed" in p.stderr


@pytest.mark.parametrize("text, where", [
    ("eval_interval = 5\nlearning_rate = 1e-3 +\n", ":2: SyntaxError"),
    ("eval_interval = 5\n\nx = 1 / 0\n", ":3: ZeroDivisionError: division by zero"),
    ("import nonexistent_module_xyz\n", ":1: ModuleNotFoundError"),
])
def test_a_broken_config_file_is_one_line_naming_file_and_line(tmp_path, text, where):
    cfg = tmp_path / "broken.py"
    cfg.write_text(text)
    p = run_script(tmp_path, str(cfg))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"error: {cfg}{where}") and p.stderr.count("\n") == 1, p.stderr


def test_overridden_names_what_was_set(tmp_path):
    g = settings()
    cfg = tmp_path / "c.py"
    cfg.write_text("eval_interval = 10\nout_dir = 'out'\n")  # out_dir keeps its default value
    run(g, str(cfg), "--top_k=3")
    assert configurator.overridden(g) == {"eval_interval", "top_k"}


def test_config_file_found_beside_the_script_from_another_directory(tmp_path, monkeypatch):
    g = {name: value for name, value, *_ in configurator.read_settings(ROOT / "train.py")}
    g["__file__"] = str(ROOT / "train.py")
    monkeypatch.chdir(tmp_path)
    assert configurator.configure(g, ["config/train_char.py"], quiet=True)["dataset"] == "shakespeare_char"


@pytest.mark.parametrize("changes, words", [
    ({"n_embd": 32, "n_head": 3}, "n_embd (32) must be a multiple of n_head (3)"),
    ({"warmup_iters": 10, "lr_decay_iters": 5}, "warmup_iters (10) is longer than lr_decay_iters (5): the decay "
                                                "would end before the warmup; make lr_decay_iters at least warmup_iters"),
    ({"warmup_iters": 10, "lr_decay_iters": 50, "cooldown_iters": 41},
     "cooldown_iters (41) must fit between warmup_iters (10) and lr_decay_iters (50)"),
])
def test_checks_across_settings_are_one_line_each(capsys, changes, words):
    good = dict(n_embd=32, n_head=4, decay_lr=True, warmup_iters=10, lr_decay_iters=50, cooldown_iters=40)
    configurator.check_across(good)  # a cooldown that fills the decay exactly is fine
    configurator.check_across({**good, "warmup_iters": 99, "decay_lr": False})  # no schedule: no order to keep
    with pytest.raises(SystemExit) as e:
        configurator.check_across({**good, **changes})
    assert e.value.code == 1
    assert capsys.readouterr().err == f"error: {words}\n"
