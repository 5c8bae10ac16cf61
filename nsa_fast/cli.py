"""What every command line of nsa_fast shares: argument types that refuse bad values, a parser
whose errors are one line, and the wrapper that turns a user's mistake into ``error: ...`` and
exit code 2 instead of a traceback.
"""
from __future__ import annotations

import argparse
import errno
import sys
from typing import Callable

from .errors import NsaError

USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class Interrupted(Exception):
    """Ctrl-C, caught by a command that knows what to say: its message is the line printed."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, exit code 2), defaults shown in help, and
    required options listed first, in a group of their own."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self._required = self.add_argument_group("required arguments")
        groups = self._action_groups  # argparse prints groups in this order: required ones first
        groups.insert(1, groups.pop(groups.index(self._required)))

    def add_argument(self, *args, **kwargs):
        if kwargs.get("required"):
            action = self._required.add_argument(*args, **kwargs)
            # the usage line lists required options first too (argparse follows _actions' order)
            self._actions.remove(action)
            first_optional = next((i for i, a in enumerate(self._actions)
                                   if a.option_strings and not a.required and not isinstance(a, argparse._HelpAction)),
                                  len(self._actions))
            self._actions.insert(first_optional, action)
            return action
        return super().add_argument(*args, **kwargs)

    def error(self, message: str):
        _say(f"error: {message} (see {self.prog} --help)")
        self.exit(USAGE_ERROR)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the module docstrings' layout and appends each option's default to its help."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or not action.option_strings or default is None or default is False
                or default is argparse.SUPPRESS or default == []):
            return text
        return text + " (default: %(default)s)"


def number(kind: type, low: float, strict: bool, high: float) -> Callable[[str], int | float]:
    """An argparse type for numbers in (low, high] (strict) or [low, high]; the message says which."""
    top = f"{int(high):,}" if kind is int else f"{high:g}"
    what = (f"{'a positive' if strict and low == 0 else 'a non-negative' if low == 0 else 'a'} "
            f"{'integer' if kind is int else 'number'} up to {top}")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or not (low < value if strict else low <= value) or value > high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = number(int, 0, True, 10**6)
non_negative_int = number(int, 0, False, 10**6)
positive_float = number(float, 0.0, True, 10.0)
seed_int = number(int, 0, False, 2**32 - 1)
worker_count = number(int, 0, False, 256)


def share(low_inclusive: bool) -> Callable[[str], float]:
    """An argparse type for a share below 1: (0, 1), or [0, 1) with ``low_inclusive``."""
    what = f"a share {'from 0' if low_inclusive else 'above 0'} and below 1 (0.01 is 1 %)"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ((0.0 <= value if low_inclusive else 0.0 < value) and value < 1.0):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


rate = share(low_inclusive=False)
fraction = share(low_inclusive=True)


def os_error_message(err: OSError) -> str:
    """A user-facing line for an error of the file system, with what to do about it."""
    where = f" {err.filename!r}" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full{': could not write' + where if where else ''}. Free some space and run again."
    if err.errno == errno.EROFS:
        return f"the file system is read-only{': could not write' + where if where else ''}; choose another --out."
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write{where}: choose a writable folder (--out) or fix its permissions."
    if err.errno == errno.ENOTDIR:
        return f"{where.strip() or 'a path'} is a file where a folder is needed: choose another --out."
    if err.errno == errno.EEXIST:
        return f"{where.strip() or 'a path'} already exists as a file: choose another --out."
    return f"{err.strerror or err}{where}."


def _say(line: str) -> None:
    """Print an error once for a torchrun job: every rank fails alike, rank 0 speaks."""
    import os

    if os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr)


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call a command's ``main``: user mistakes (NsaError) and file-system failures become one
    ``error:`` line on stderr and exit code 2; Ctrl-C one line and exit code 130, without a traceback;
    anything else is a bug and keeps its traceback."""
    try:
        return main(argv)
    except Interrupted as stop:
        _say(str(stop))
        return INTERRUPTED
    except SystemExit as done:  # argparse after --help (0) or a usage error (2, already printed)
        return done.code if isinstance(done.code, int) else USAGE_ERROR
    except NsaError as err:
        _say(f"error: {err}")
        return USAGE_ERROR
    except OSError as err:
        _say(f"error: {os_error_message(err)}")
        return USAGE_ERROR
    except KeyboardInterrupt:
        _say("interrupted")
        return INTERRUPTED
