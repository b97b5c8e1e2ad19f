"""The shared command-line helpers: number types, output paths checked first, Ctrl-C and broken pipes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from magcache_videosys.console import (
    OutputPathError,
    check_output_file,
    check_output_folder,
    finite_float,
    float_at_least,
    float_in_range,
    int_at_least,
    run_command,
)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_non_finite_numbers_are_rejected(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not a finite number"):
        finite_float(text)


def test_number_types_check_their_range():
    assert finite_float("0.25") == 0.25
    assert float_at_least(0.0)("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError, match="must be > 0"):
        float_at_least(0.0, exclusive=True)("0")
    with pytest.raises(argparse.ArgumentTypeError, match="not a number"):
        float_at_least(0.0)("abc")
    assert int_at_least(1)("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="must be >= 1"):
        int_at_least(1)("0")
    with pytest.raises(argparse.ArgumentTypeError, match="not a whole number"):
        int_at_least(1)("2.5")
    assert float_in_range(0.0, 1.0)("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError, match="1 must be >= 0 and < 1"):
        float_in_range(0.0, 1.0)("1")
    with pytest.raises(argparse.ArgumentTypeError, match="not a finite number"):
        float_in_range(0.0, 1.0)("nan")


def test_argparse_reports_the_bad_value_in_one_line(capsys):
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--threshold", type=float_at_least(0.0))
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--threshold", "nan"])
    assert exit_info.value.code == 2
    assert "argument --threshold: 'nan' is not a finite number" in capsys.readouterr().err


def test_output_file_checks(tmp_path):
    assert check_output_file(tmp_path / "a.csv", "--csv") == tmp_path / "a.csv"
    with pytest.raises(OutputPathError, match=r"--csv .* is a folder; give a file name"):
        check_output_file(tmp_path, "--csv")
    with pytest.raises(OutputPathError, match=r"the folder /nonexistent_dir_x does not exist; create it first"):
        check_output_file("/nonexistent_dir_x/x.csv", "--csv")
    assert not os.path.exists("/nonexistent_dir_x")
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputPathError, match="is not a folder"):
        check_output_file(tmp_path / "f" / "x.csv", "--csv")


def test_output_folder_checks(tmp_path):
    assert check_output_folder(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputPathError, match="is a file; give a folder"):
        check_output_folder(tmp_path / "f", "--out")
    with pytest.raises(OutputPathError, match="is a file, so no folder can be made there"):
        check_output_folder(tmp_path / "f" / "sub", "--out")


def test_read_only_file_system_is_not_writable(tmpfs):
    mount = tmpfs(readonly=True)
    with pytest.raises(OutputPathError, match="is not writable"):
        check_output_file(mount / "x.csv", "--csv")
    with pytest.raises(OutputPathError, match="is not writable"):
        check_output_folder(mount / "run", "--out")


def test_interrupt_is_one_line_and_exit_130(capsys):
    def main():
        raise KeyboardInterrupt

    assert run_command(main, "tool", on_interrupt=lambda: "3 videos kept; rerun to resume.") == 130
    err = capsys.readouterr().err
    assert err.strip() == "tool: interrupted (Ctrl-C). 3 videos kept; rerun to resume."


def test_closed_stdout_exits_quietly():
    code = (
        "import sys\n"
        "from magcache_videosys.console import run_command\n"
        "def main():\n"
        "    for i in range(100000):\n"
        "        print('line', i)\n"
        "sys.exit(run_command(main, 'tool'))\n"
    )
    proc = subprocess.run(
        f'{sys.executable} -c "{code}" | head -1', shell=True, capture_output=True, text=True, check=True
    )
    assert proc.stdout == "line 0\n"
    assert proc.stderr == ""
