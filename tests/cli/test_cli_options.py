"""The sub-commands speak one language: an option name means one form everywhere, defaults are
shown in the help, and the shared options (``--input-size``, ``--units``, ``--version``) work."""

from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

import convsight
from convsight.cli import build_parser, main


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def value_form(action: argparse.Action) -> tuple:
    """How one value of an option is written: how many words, read by which function, from which
    choices, under which name in the help. (Whether the option may repeat is the command's.)"""
    return (action.nargs, action.type, tuple(action.choices) if action.choices else None,
            action.metavar, action.const if action.nargs == "?" else None)


def form_conflicts(parser: argparse.ArgumentParser) -> list[str]:
    """Each option string whose form differs between two sub-commands, with the forms."""
    forms: dict[str, dict[tuple, list[str]]] = defaultdict(lambda: defaultdict(list))
    for command, sp in subparsers(parser).items():
        for action in sp._actions:
            for option in action.option_strings:
                forms[option][value_form(action)].append(command)
    return [f"{option}: " + "; ".join(f"{', '.join(cmds)} take {form}" for form, cmds in by.items())
            for option, by in sorted(forms.items()) if len(by) > 1]


def test_same_named_options_take_the_same_form():
    assert form_conflicts(build_parser()) == []


def test_the_form_check_catches_a_mismatch():
    """The check above can fail: two commands whose --input-size and --units differ as they did
    before (one number vs height and width; ranges vs plain integers)."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    mine, rf = sub.add_parser("mine"), sub.add_parser("rf")
    mine.add_argument("--input-size", type=int, metavar="PX")
    rf.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"))
    mine.add_argument("--units", default=None)
    rf.add_argument("--units", type=lambda t: [int(v) for v in t.split(",")])
    conflicts = form_conflicts(parser)
    assert [c.split(":")[0] for c in conflicts] == ["--input-size", "--units"]


def test_defaults_are_shown_in_the_help():
    missing = []
    for command, sp in subparsers(build_parser()).items():
        for a in sp._actions:
            if a.required or not a.option_strings or a.nargs == 0 or \
                    a.default in (None, argparse.SUPPRESS, []):
                continue
            if "default" not in (a.help or ""):
                missing.append(f"{command} {a.option_strings[-1]} (default {a.default!r})")
    assert missing == []


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"convsight {convsight.__version__}"


def test_argparse_errors_are_one_line(capsys):
    assert main(["filters", "--units", "5-2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("convsight: error: argument --units:"), err
    assert "backwards" in err[0] and "convsight filters --help" in err[0]


@pytest.mark.parametrize("text, units", [("3", [3]), ("0-3", [0, 1, 2, 3]),
                                         ("3,7,10-12", [3, 7, 10, 11, 12])])
def test_units_take_ranges_in_every_command(text, units):
    parser = build_parser()
    assert parser.parse_args(["filters", "--units", text]).units == units
    assert parser.parse_args(["maximize", "--layer", "x", "--units", text]).units == units
    assert parser.parse_args(["mine", "d", "--layers", "x", "-o", "a", "--synthesize",
                              text]).synthesize == units


def test_synthesize_alone_means_every_unit():
    parser = build_parser()
    mine = ["mine", "d", "--layers", "x", "-o", "a"]
    assert parser.parse_args(mine).synthesize is False
    assert parser.parse_args(mine + ["--synthesize"]).synthesize is None  # every unit
    assert parser.parse_args(mine + ["--synthesize", "all"]).synthesize is None
    assert parser.parse_args(["filters", "--units", "all"]).units is None


def test_filters_draws_a_range_of_units(tmp_path, capsys):
    assert main(["filters", "--units", "0-2", "-o", str(tmp_path / "a.png")]) == 0
    assert main(["filters", "--units", "0,1,2", "-o", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.parametrize("words, size", [(["100"], (100, 100)), (["100", "64"], (100, 64))])
def test_input_size_one_number_or_two_in_every_command(words, size, capsys):
    parser = build_parser()
    assert parser.parse_args(["rf", "x", "--input-size", *words]).input_size == [int(w) for w in words]
    assert parser.parse_args(["mine", "d", "--layers", "x", "-o", "a", "--input-size",
                              *words]).input_size == [int(w) for w in words]
    assert main(["rf", "blocks.5", "--input-size", *words]) == 0
    assert f"input {size[0]}x{size[1]}" in capsys.readouterr().out


def test_check_lists_methods_and_uses_the_library_occlusion_defaults():
    from convsight.attribute import METHODS
    from convsight.trust.check import CHECK_OPTIONS

    check = subparsers(build_parser())["check"]
    actions = {a.dest: a for a in check._actions}
    assert all(m in actions["methods"].help for m in METHODS)
    assert actions["window"].default == CHECK_OPTIONS["occlusion"]["window"]
    assert actions["stride"].default == CHECK_OPTIONS["occlusion"]["stride"]
    assert actions["quiet"].nargs == 0


def test_help_of_every_command_formats():
    for command, sp in subparsers(build_parser()).items():
        assert sp.format_help().startswith("usage: convsight " + command)
