"""What every script shares: one-line errors, quiet exits, and paths that work from any directory."""
import argparse
import os
import signal
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))  # the project folder: data/, out*/ and config/ live here


class UserError(Exception):
    """A problem the user can fix: reported as one `error: ...` line and exit status 1."""


def fail(msg):
    """Report a problem the user can fix, in one line, and exit with status 1."""
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(1)


def run_main(main, *args):
    """Run a script's main(): a UserError becomes one `error:` line and exit status 1, output
    piped into a program that stops reading (`| head`) ends quietly, and Ctrl-C exits 130."""
    try:
        return main(*args)
    except UserError as e:
        fail(e)
    except BrokenPipeError:
        quiet_broken_pipe()
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)


def exit_on_ctrl_c(message='interrupted'):
    """Ctrl-C ends this script with the message and status 130, not a traceback (for scripts
    that run at module level; run_main does the same for a main())."""
    def handler(signum, frame):
        print(f'\n{message}', file=sys.stderr)
        sys.exit(130)
    signal.signal(signal.SIGINT, handler)


def errors_as_one_line():
    """From now on an uncaught UserError ends the script with its one `error:` line and exit
    status 1, as does running out of memory (for scripts that run at module level; run_main does
    the same for a main()). Any other exception is a bug and keeps its traceback."""
    def hook(kind, error, tb):
        if issubclass(kind, UserError):
            print(f'error: {error}', file=sys.stderr)
        elif issubclass(kind, MemoryError) or 'RESOURCE_EXHAUSTED' in str(error)[:300]:
            print(f'error: out of memory ({str(error).splitlines()[0][:200] if str(error) else kind.__name__}): '
                  f'lower the batch size, the context or the model\'s size', file=sys.stderr)
        else:
            sys.__excepthook__(kind, error, tb)
    sys.excepthook = hook


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes (an unknown option, a bad value, parser.error(...)) raise UserError,
    so that under run_main they end like every other mistake: one `error:` line, exit status 1."""

    def error(self, message):
        raise UserError(f'{message} (--help lists the options)')


def quiet_broken_pipe():
    # stdout's reader has gone: point stdout at /dev/null so that Python's own flush at exit
    # does not raise again, and exit as a pipeline expects
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(141)


def find(path):
    """A relative path as the user meant it: from the working directory if it exists there,
    else from the project folder if it exists there (so scripts run from anywhere find the
    project's data/ and out*/), else from the working directory (where new files go)."""
    if os.path.isabs(path) or os.path.exists(path) or not os.path.exists(os.path.join(ROOT, path)):
        return path
    return os.path.join(ROOT, path)
