"""Label files: byte-order marks, CRLF, and blank lines that would shift every later label."""

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.labels.files import read_expr_labels, read_va_labels

CLASSES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness")


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "a.txt"
    text = "\ufeffNeutral,Anger,Disgust,Fear,Happiness,Sadness\r\n1\r\n-1\r\n4\r\n\r\n"
    path.write_bytes(text.encode())
    assert read_expr_labels(path, CLASSES).tolist() == [1, -1, 4]
    va = tmp_path / "a_va.txt"
    va.write_bytes("\ufeffvalence,arousal\r\n0.5,-0.25\r\n-5,-5\r\n".encode())
    out = read_va_labels(va)
    assert out[0].tolist() == [0.5, -0.25] and np.isnan(out[1]).all()


def test_blank_line_inside_is_an_error_with_its_line_number(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Neutral,Anger\n1\n0\n\n1\n\n\n")  # trailing blank lines are fine
    with pytest.raises(DataError, match=r"a\.txt: line 4: blank line inside the file"):
        read_expr_labels(path, CLASSES)
    va = tmp_path / "v.txt"
    va.write_text("valence,arousal\n0.1,0.2\n  \n0.3,0.4\n")
    with pytest.raises(DataError, match=r"v\.txt: line 3: blank line inside the file"):
        read_va_labels(va)


def test_va_line_errors_name_the_line(tmp_path):
    va = tmp_path / "v.txt"
    va.write_text("valence,arousal\n0.1,0.2\n0.3\n")  # one value would otherwise fill both columns
    with pytest.raises(DataError, match=r"line 3: '0.3' is not a valence,arousal pair"):
        read_va_labels(va)
    va.write_text("valence,arousal\n0.1,0.2,0.3\n")
    with pytest.raises(DataError, match="line 2: "):
        read_va_labels(va)
