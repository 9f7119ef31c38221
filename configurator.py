"""Command-line and config-file overrides for a script's module-level settings.

A script defines its settings as plain globals, each with a comment saying what it is, then calls

    config = configurator.configure(globals())

which applies, in order, every argument on the command line:

    python train.py config/shakespeare.py --batch_size=32 --dtype=bfloat16

* `config/file.py` (no leading `--`) is Python executed in the script's globals.
  Assigning a name that is not a known setting is an error (typo protection);
  names starting with '_', imports and functions are free for helpers.
* `--key=value` sets one setting. The value is read with ast.literal_eval and
  falls back to the raw text when that fails, so `--dtype=bfloat16` works.
  A bare `--flag` is refused: write `--flag=True`.

Settings are the globals present when configure() is called whose names do not
start with '_' and whose values are bool, int, float, str or None. Type rules,
checked against each setting's default (for config files too):

* same type as the default: accepted; an int given for a float becomes a float;
* bool and int never mix (`--max_iters=True`, `--eval_only=1` are errors);
* a str default keeps the text as written (`--wandb_run_name=123` gives '123');
* a None default accepts any value; None itself is accepted only there
  (for a str setting, `--key=None` is the text 'None').

Errors print one line `error: ...` to stderr and exit with status 1 (no traceback).
`--help` / `-h` prints the script's docstring and lists every setting with its default and the comment written beside it in
the script, under the script's own section headings, and exits with status 0.
read_settings(path) gives the same settings of a script without running it.

Values are checked too, after every override, by one table for all the scripts (RULES below:
ranges and choices, keyed by the setting's name); a script adds or narrows rules for its own
settings with configure(g, rules={...}).
"""
import ast
import difflib
import io
import os
import sys
import math
import tokenize

from common import fail

PLAIN = (bool, int, float, str, type(None))
# nanoGPT's keys that mean nothing here: accepted with a note, so that its commands still run
NANOGPT_KEYS = {
    'device': 'JAX picks the device itself (the GPU when jax[cuda] is installed, else the CPU)',
    'compile': 'jax.jit always compiles the training step',
    'backend': 'jax.distributed needs no backend setting',
}


# ----------------------------------------------------------------------------- what each setting may be

INT32_MAX = 2 ** 31 - 1  # counts and seeds reach jitted code as 32-bit integers
FLOAT32_MAX = 3.4e38  # learning rates and the like are float32 there


class Count:
    """A whole number from lo to hi."""

    def __init__(self, lo=0, hi=INT32_MAX):
        self.lo, self.hi = lo, hi

    def error(self, value):
        if type(value) is not int:
            return f"must be a whole number, not {value!r}"
        if value < self.lo:
            return f"must be at least {self.lo}, not {value}"
        if value > self.hi:
            return f"must be at most {self.hi:,}, not {value:,}"


class Number:
    """A finite number (float32's range) above `above` or at least `at_least`, and below `below`
    or at most `at_most`; `hint` ends the message."""

    def __init__(self, above=None, at_least=None, below=None, at_most=None, hint=''):
        self.above, self.at_least, self.below, self.at_most, self.hint = above, at_least, below, at_most, hint

    def error(self, value):
        bounds = [f"{words} {bound:g}" for words, bound in (("above", self.above), ("at least", self.at_least),
                                                              ("below", self.below), ("at most", self.at_most))
                  if bound is not None]
        what = "a positive number" if bounds == ["above 0"] else "a number " + " and ".join(bounds)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
            return f"must be {what}, not {value!r}"
        if abs(value) > FLOAT32_MAX:
            return f"must be {what} within float32's range (up to {FLOAT32_MAX:g}), not {value!r}"
        if ((self.above is not None and value <= self.above) or (self.at_least is not None and value < self.at_least)
                or (self.below is not None and value >= self.below) or (self.at_most is not None and value > self.at_most)):
            return f"must be {what}, not {value!r}" + (f" ({self.hint})" if self.hint else "")


class Choice:
    def __init__(self, *options):
        self.options = options

    def error(self, value):
        if value not in self.options:
            listed = ", ".join(repr(o) for o in self.options[:-1]) + f" or {self.options[-1]!r}"
            return f"must be {listed}, not {value!r}"


DTYPE = Choice("auto", "float32", "bfloat16", "float16")
RULES = {
    # sizes and counts
    **{k: Count(1) for k in ("batch_size", "block_size", "n_layer", "n_head", "n_embd", "eval_interval",
                             "log_interval", "eval_iters", "gradient_accumulation_steps", "num_samples",
                             "eval_batch_size", "steps")},
    **{k: Count(0) for k in ("max_iters", "warmup_iters", "lr_decay_iters", "cooldown_iters", "cpu_devices",
                             "seed", "max_new_tokens", "max_examples", "show_wrong", "nrow",
                             "hellaswag_examples")},
    "top_k": Count(1),
    # the optimizer
    "learning_rate": Number(above=0), "muon_lr": Number(above=0),
    **{k: Number(at_least=0) for k in ("weight_decay", "muon_weight_decay", "min_lr", "grad_clip", "peak_tflops",
                                       "target")},
    **{k: Number(at_least=0, below=1) for k in ("beta1", "beta2", "muon_momentum", "dropout", "ema_decay")},
    # sampling
    "temperature": Number(above=0, hint="--top_k=1 decodes greedily"),
    "top_p": Number(above=0, at_most=1), "keep_fraction": Number(above=0, at_most=1),
    # choices
    "optimizer": Choice("adamw", "muon"), "dtype": DTYPE,
}


def check(config, rules=None, defaults=None):
    """Exit with one error line for the first setting in config that breaks its rule (RULES,
    updated by rules). A setting whose default is None may also be None."""
    rules = {**RULES, **(rules or {})}
    for key, value in config.items():
        if key not in rules or (value is None and (defaults or {}).get(key, 0) is None):
            continue
        error = rules[key].error(value)
        if error:
            fail(f"{key} {error}")


def check_across(config):
    """train.py's checks that take several settings: the model's heads split n_embd evenly, and the
    learning-rate schedule's phases come in order (the warmup, then the decay, with its cooldown
    inside it, ending at lr_decay_iters)."""
    if config['n_embd'] % config['n_head']:
        fail(f"n_embd ({config['n_embd']}) must be a multiple of n_head ({config['n_head']})")
    if not config['decay_lr']:
        return
    warmup, decay, cooldown = config['warmup_iters'], config['lr_decay_iters'], config['cooldown_iters']
    if warmup > decay:
        fail(f'warmup_iters ({warmup}) is longer than lr_decay_iters ({decay}): the decay would end before '
             f'the warmup; make lr_decay_iters at least warmup_iters')
    if cooldown > decay - warmup:
        fail(f'cooldown_iters ({cooldown}) must fit between warmup_iters ({warmup}) and lr_decay_iters ({decay})')


def _unknown(key, defaults, where, script):
    close = difflib.get_close_matches(key, list(defaults), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    fail(f"{where}unknown key '{key}'{hint}; python {script} --help lists the settings")


def _check(key, value, raw, default, where):
    """Return `value` converted to the type of `default`, or exit with an error.
    `raw` is the command-line text, None for values set in a config file."""
    want = type(default)
    if default is None or type(value) is want:
        return value
    if want is str and raw is not None:  # the user meant text: keep it as written
        return raw
    if want is float and type(value) is int:
        return float(value)
    expected = "float (or int)" if want is float else want.__name__
    fail(f"{where}key '{key}' expects {expected}, got {value!r} ({type(value).__name__})")


def overridden(g):
    """The settings that config files or --key=value set in the last configure(g) call."""
    return g.get("_overridden", set())


def read_settings(path):
    """A script's settings without running it: [(name, default, comment, section)] for every
    top-level `name = literal` before its configure() call, in order. comment is the text of the
    `# ...` on the same line, section the last full-line comment above it ('' if none)."""
    with open(path, encoding='utf-8') as f:
        source = f.read()
    comments = {}  # line number -> (comment text, whether the comment is the whole line)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            whole = not tok.line[:tok.start[1]].strip()
            comments[tok.start[0]] = (tok.string.lstrip('#').strip(), whole)
    settings, section, line = [], '', 0
    for node in ast.parse(source).body:
        if 'configure' in ast.unparse(node):
            break
        for n in range(line + 1, node.lineno):  # full-line comments above this statement
            if n in comments and comments[n][1] and comments[n][0].strip('- '):
                section = comments[n][0].strip('- ')  # '# ---- settings' is 'settings'
        line = node.end_lineno
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            continue
        name = node.targets[0].id
        if not name.startswith('_') and isinstance(value, PLAIN):
            comment = comments.get(node.lineno, ('', True))
            settings.append((name, value, '' if comment[1] else comment[0], section))
    return settings


def _help(g, defaults):
    try:
        _print_help(g, defaults)
    except BrokenPipeError:  # --help | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(0)


def _print_help(g, defaults):
    script = os.path.basename(g.get("__file__") or sys.argv[0] or "script.py")
    print(f"usage: python {script} [config/file.py ...] [--key=value ...]")
    doc = (g.get("__doc__") or "").strip()
    if doc:
        print("\n" + doc)
    try:
        described = {name: (comment, section) for name, _, comment, section in read_settings(g["__file__"])}
    except (KeyError, OSError, SyntaxError):
        described = {}
    print("\nsettings (default values):")
    key_width = max((len(k) for k in defaults), default=0)
    rows = {key: f"  {key:<{key_width}} = {value!r}" for key, value in defaults.items()}
    row_width = max((len(r) for r in rows.values()), default=0)
    last = ""
    for key, row in rows.items():
        comment, section = described.get(key, ("", ""))
        if section and section != last:
            print(f"\n{section}")
            last = section
        print(f"{row:<{row_width}}   {comment}" if comment else row)


def configure(g, argv=None, *, quiet=False, rules=None):
    """Apply config files and --key=value overrides from argv (default sys.argv[1:])
    to the globals dict `g`, check every value (RULES, updated by rules); return
    {key: value} of every setting afterwards."""
    argv = sys.argv[1:] if argv is None else list(argv)
    defaults = {k: v for k, v in g.items() if not k.startswith("_") and isinstance(v, PLAIN)}
    script = os.path.basename(g.get("__file__") or sys.argv[0] or "script.py")
    say = (lambda *a: None) if quiet else print
    if "-h" in argv or "--help" in argv:
        _help(g, defaults)
    changed = g["_overridden"] = set()  # what config files and flags set, for overridden()
    for arg in argv:
        if not arg.startswith("-"):  # a config file
            path = arg if os.path.isfile(arg) else os.path.join(os.path.dirname(os.path.abspath(g.get("__file__", "."))), arg)
            if not os.path.isfile(path):
                fail(f"config file not found: {arg}")
            before = dict(g)
            say(f"Overriding config with {arg}:")
            try:
                with open(path) as f:
                    exec(compile(f.read(), arg, "exec"), g)
            except SystemExit:
                raise
            except BaseException as e:  # one line naming the file and the line
                tb = e.__traceback__
                lineno = getattr(e, "lineno", None) if isinstance(e, SyntaxError) else None
                while tb is not None:
                    if tb.tb_frame.f_code.co_filename == arg:
                        lineno = tb.tb_lineno
                    tb = tb.tb_next
                fail(f"{arg}:{lineno or '?'}: {type(e).__name__}: {getattr(e, 'msg', None) or e}")
            for key, value in list(g.items()):
                if key.startswith("_") or (key not in defaults and not isinstance(value, PLAIN)):
                    continue  # private helpers, imports, functions
                if key not in defaults and key in NANOGPT_KEYS:
                    print(f"note: {arg} sets '{key}', which is not needed here: {NANOGPT_KEYS[key]}", file=sys.stderr)
                    del g[key]
                    continue
                if key not in defaults:
                    _unknown(key, defaults, f"{arg} sets ", script)
                if (type(value), value) != (type(before[key]), before[key]):
                    g[key] = _check(key, value, None, defaults[key], f"{arg}: ")
                    changed.add(key)
                    say(f"Overriding: {key} = {g[key]!r}")
        elif arg.startswith("--") and len(arg) > 2:
            key, eq, raw = arg[2:].partition("=")
            if key not in defaults and key in NANOGPT_KEYS:
                print(f"note: --{key} is not needed here: {NANOGPT_KEYS[key]}", file=sys.stderr)
                continue
            if key not in defaults:
                _unknown(key, defaults, "", script)
            if not eq:
                fail(f"'{arg}' has no value; use {arg}=True")
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = raw
            g[key] = _check(key, value, raw, defaults[key], "")
            changed.add(key)
            say(f"Overriding: {key} = {g[key]!r}")
        else:
            fail(f"unrecognized argument '{arg}' (expected config/file.py or --key=value)")
    config = {key: g[key] for key in defaults}
    check(config, rules, defaults)
    return config
