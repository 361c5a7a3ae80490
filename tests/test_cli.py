from hplan.cli import main


def test_tasks_lists_shipped(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "two-rooms" in out and "large" in out and "trap" in out


def test_show_writes_png(tmp_path):
    out = tmp_path / "t.png"
    assert main(["show", "--task", "four-rooms-staged", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_collect_writes_data_and_heatmap(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["collect", "--task", "umaze", "--episodes", "32", "--steps", "16",
                 "--out", str(out)]) == 0
    assert (out / "data.npz").is_file() and (out / "meta.json").is_file()
    assert (out / "coverage.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_task_is_a_clean_error(capsys):
    assert main(["show", "--task", "nope", "--out", "x.png"]) == 2
    assert "Known tasks:" in capsys.readouterr().err
