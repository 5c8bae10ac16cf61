"""What a run shows: a bar with the epoch on a terminal, one line an epoch elsewhere."""
import io

from nsa_fast.progress import Logger, clock, rate


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_rates_keep_their_precision():
    assert [rate(x) for x in (1234.4, 56.78, 0.4231, 0.04)] == ["1234", "56.8", "0.42", "0.04"]
    assert clock(3723.4) == "1:02:03"


def test_a_terminal_gets_a_bar_with_the_epoch_and_no_epoch_lines(tmp_path):
    term = Terminal()
    log = Logger(tmp_path, epochs=3, steps_per_epoch=2, start_epoch=0, done_steps=0, enabled=True, stream=term)
    log.begin_epoch(1)  # the index of the second epoch
    log.step(0.5, 0.42)
    log.epoch({"epoch": 2, "step": 2, "loss": 0.5, "lr": 1e-3, "samples_per_s": 0.42, "data_s": 0, "step_s": 0,
               "seconds": 1})
    log.close()
    out = term.getvalue()
    assert "epoch 2/3" in out and "0.42 samples/s" in out and "loss 0.5000" in out
    assert "ETA" not in out  # the per-epoch line is for pipes and files


def test_a_pipe_gets_one_line_an_epoch(tmp_path):
    pipe = io.StringIO()
    log = Logger(tmp_path, epochs=4, steps_per_epoch=2, start_epoch=2, done_steps=4, enabled=True, stream=pipe)
    for e in (3, 4):  # epochs count from 1 in the rows, as on the console
        log.epoch({"epoch": e, "step": 2 * e, "loss": 0.25, "lr": 5e-4, "samples_per_s": 123.4, "data_s": 0,
                   "step_s": 0, "seconds": 1})
    lines = pipe.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 3/4", "epoch 4/4"]
    assert "123 samples/s" in lines[0] and "ETA" in lines[0]
    assert (tmp_path / "log.csv").read_text().count("\n") == 3  # header and two rows
    assert [r.split(",")[0] for r in (tmp_path / "log.csv").read_text().splitlines()[1:]] == ["3", "4"]


def test_a_log_counted_from_0_by_an_earlier_version_is_renumbered_when_resumed(tmp_path):
    import csv

    head = "epoch,step,loss,lr,samples_per_s,data_s,step_s,seconds\r\n"
    (tmp_path / "log.csv").write_text(head + "0,2,0.5,1e-3,1,0,0,1\r\n1,4,0.4,1e-3,1,0,0,1\r\n", newline="")
    log = Logger(tmp_path, epochs=4, steps_per_epoch=2, start_epoch=2, done_steps=4, enabled=True, stream=io.StringIO())
    log.epoch({"epoch": 3, "step": 6, "loss": 0.3, "lr": 5e-4, "samples_per_s": 1, "data_s": 0, "step_s": 0,
               "seconds": 1})
    rows = list(csv.DictReader(open(tmp_path / "log.csv", newline="")))
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", "2"), ("2", "4"), ("3", "6")]
    # a log already counted from 1 is left as it is
    Logger(tmp_path, epochs=4, steps_per_epoch=2, start_epoch=3, done_steps=6, enabled=True, stream=io.StringIO())
    assert [r["epoch"] for r in csv.DictReader(open(tmp_path / "log.csv", newline=""))] == ["1", "2", "3"]


def test_a_terminal_without_columns_gets_the_lines(tmp_path):
    import os

    master, slave = os.openpty()  # a pseudo-terminal nobody sized: 0 x 0
    with open(slave, "w") as tty, open(master, "rb", buffering=0) as reader:
        assert tty.isatty() and os.get_terminal_size(slave).columns == 0
        log = Logger(tmp_path, epochs=2, steps_per_epoch=1, start_epoch=0, done_steps=0, enabled=True, stream=tty)
        assert log.bar is None
        log.epoch({"epoch": 1, "step": 1, "loss": 0.5, "lr": 1e-3, "samples_per_s": 3.0, "data_s": 0, "step_s": 0,
                   "seconds": 1})
        log.close()
        tty.flush()
        assert reader.read(4096).decode().startswith("epoch 1/2: loss 0.5000")
