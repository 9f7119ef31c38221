"""Command-line and config-file overrides for a script's module-level settings.

A script defines its settings as plain globals, then calls

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
* bool and int never mix (`--max_iters=True`, `--compile=1` are errors);
* a str default keeps the text as written (`--wandb_run_name=123` gives '123');
* a None default accepts any value; None itself is accepted only there
  (for a str setting, `--key=None` is the text 'None').

Errors print one message to stderr and exit with status 1 (no traceback);
`--help` / `-h` lists every setting with its default and exits with status 0.
"""
import ast
import difflib
import os
import sys

PLAIN = (bool, int, float, str, type(None))


def _fail(msg):
    print(f"config error: {msg}", file=sys.stderr)
    raise SystemExit(1)


def _unknown(key, defaults, where):
    close = difflib.get_close_matches(key, list(defaults), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    _fail(f"{where}unknown key '{key}'{hint}\nvalid keys: {', '.join(sorted(defaults))}")


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
    _fail(f"{where}key '{key}' expects {expected}, got {value!r} ({type(value).__name__})")


def _help(g, defaults):
    script = os.path.basename(g.get("__file__") or sys.argv[0] or "script.py")
    print(f"usage: python {script} [config/file.py ...] [--key=value ...]")
    doc = (g.get("__doc__") or "").strip()
    if doc:
        print("\n" + doc.splitlines()[0])
    print("\nsettings (default values):")
    width = max((len(k) for k in defaults), default=0)
    for key, value in defaults.items():
        print(f"  {key:<{width}} = {value!r}")
    raise SystemExit(0)


def configure(g, argv=None, *, quiet=False):
    """Apply config files and --key=value overrides from argv (default sys.argv[1:])
    to the globals dict `g`; return {key: value} of every setting afterwards."""
    argv = sys.argv[1:] if argv is None else list(argv)
    defaults = {k: v for k, v in g.items() if not k.startswith("_") and isinstance(v, PLAIN)}
    say = (lambda *a: None) if quiet else print
    if "-h" in argv or "--help" in argv:
        _help(g, defaults)
    for arg in argv:
        if not arg.startswith("-"):  # a config file
            if not os.path.isfile(arg):
                _fail(f"config file not found: {arg}")
            before = dict(g)
            say(f"Overriding config with {arg}:")
            with open(arg) as f:
                exec(compile(f.read(), arg, "exec"), g)  # tracebacks name the file
            for key, value in list(g.items()):
                if key.startswith("_") or (key not in defaults and not isinstance(value, PLAIN)):
                    continue  # private helpers, imports, functions
                if key not in defaults:
                    _unknown(key, defaults, f"{arg} sets ")
                if (type(value), value) != (type(before[key]), before[key]):
                    g[key] = _check(key, value, None, defaults[key], f"{arg}: ")
                    say(f"Overriding: {key} = {g[key]!r}")
        elif arg.startswith("--") and len(arg) > 2:
            key, eq, raw = arg[2:].partition("=")
            if key not in defaults:
                _unknown(key, defaults, "")
            if not eq:
                _fail(f"'{arg}' has no value; use {arg}=True")
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError, TypeError):
                value = raw
            g[key] = _check(key, value, raw, defaults[key], "")
            say(f"Overriding: {key} = {g[key]!r}")
        else:
            _fail(f"unrecognized argument '{arg}' (expected config/file.py or --key=value)")
    return {key: g[key] for key in defaults}
