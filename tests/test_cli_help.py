"""Every command line explains itself: --help exits 0, and every option has help text and shows
its default."""
import argparse

import pytest

from nsa_fast import calibrate, cli, doctor, evaluate, predict, runner, synth, threshold, train

CLIS = {"train": train, "evaluate": evaluate, "predict": predict, "synth": synth, "runner": runner,
        "doctor": doctor, "threshold": threshold, "calibrate": calibrate}


def parser_of(module, monkeypatch) -> cli.Parser:
    """The parser a CLI builds, caught when it parses."""
    caught = []

    def catch(self, *a, **k):
        caught.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(cli.Parser, "parse_args", catch)
    assert module.main([]) == 0
    return caught[0]


@pytest.mark.parametrize("name", sorted(CLIS))
def test_help_exits_0_and_lists_every_option(name, capsys):
    assert CLIS[name].main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m nsa_fast.")
    if name == "runner":
        assert "-- TRAIN_ARGS" in out.splitlines()[0]  # the pass-through to the trainer


@pytest.mark.parametrize("name", sorted(CLIS))
def test_every_option_has_help_and_shows_its_default(name, monkeypatch, capsys):
    parser = parser_of(CLIS[name], monkeypatch)
    text = parser.format_help()
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        assert action.help and len(action.help) > 10, f"{name} {action.option_strings}: no help text"
        shown = cli.HelpFormatter("x")._get_help_string(action)
        if action.option_strings and action.default not in (None, False, []):
            assert "(default: %(default)s)" in shown or "default" in action.help, \
                f"{name} {action.option_strings}: the default {action.default!r} is not shown"
        if action.option_strings and not action.required and action.default is None and action.nargs != 0:
            assert "default" in action.help, f"{name} {action.option_strings}: says nothing of what happens without it"
        if action.required and action.option_strings:  # required options come first
            assert text.index("required arguments:") < text.index("options:")
            assert action.option_strings[0] in text.split("options:")[0]


def test_epochs_help_says_the_default_is_the_presets(monkeypatch):
    parser = parser_of(train, monkeypatch)
    epochs = next(a for a in parser._actions if "--epochs" in a.option_strings)
    assert "the preset's" in epochs.help


@pytest.mark.parametrize("name", sorted(CLIS))
def test_the_usage_line_lists_required_options_first(name, monkeypatch):
    parser = parser_of(CLIS[name], monkeypatch)
    usage = parser.format_usage()
    required = [a.option_strings[0] for a in parser._actions if a.required and a.option_strings]
    optional = [a.option_strings[0] for a in parser._actions
                if a.option_strings and not a.required and not isinstance(a, argparse._HelpAction)]
    if required and optional:
        assert max(usage.index(r + " ") for r in required) < min(usage.index("[" + o) for o in optional), usage
