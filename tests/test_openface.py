import numpy as np
import pytest

from au_core.errors import AUAgentError
from au_core.openface import BAD_VALUE, LOW_CONFIDENCE, NO_FACE, intensities_from_row, read_openface_csv
from au_standins.synthetic import openface_csv_text, synth_au_track

HEADER = "frame, face_id, timestamp, confidence, success, AU01_r, AU12_r, AU25_r, AU01_c, AU12_c, AU25_c, AU28_c"


def write(tmp_path, text, name="video_1.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def rows(*lines):
    return "\n".join([HEADER, *lines]) + "\n"


def test_reads_sample_and_marks_failures(samples):
    track = read_openface_csv(samples / "openface" / "sample_00000.csv")
    assert track.video == "sample_00000" and len(track.au_codes) == 17
    assert track.frames[0] == 1 and np.all(np.diff(track.frames) == 1)
    assert (~track.valid).sum() > 0, "the sample has failure frames"
    for i in np.flatnonzero(~track.success):
        assert not track.valid[i] and track.reasons[i] == NO_FACE and track.input_string(i) is None


@pytest.mark.parametrize("sep", [", ", ","])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
def test_separator_newline_and_bom_variants(tmp_path, sep, newline, bom):
    rng = np.random.default_rng(1)
    values, conf, success = synth_au_track(40, rng)
    text = openface_csv_text(values, conf, success, sep=sep).replace("\n", newline)
    path = write(tmp_path, text, encoding="utf-8-sig" if bom else "utf-8")
    track = read_openface_csv(path)
    assert len(track) == 40 and track.au_codes[0] == "AU01"
    np.testing.assert_allclose(track.intensities, values)


def test_validity_rules(tmp_path):
    path = write(tmp_path, rows(
        "1, 0, 0.000, 0.98, 1, 1.00, 2.00, 0.00, 1, 1, 0, 0",
        "2, 0, 0.040, 0.10, 0, 0.30, 0.20, 0.00, 0, 0, 0, 0",   # no face: smoothed leftovers are not trusted
        "3, 0, 0.080, 0.70, 1, 1.00, 2.00, 0.00, 1, 1, 0, 0",   # low confidence
        "4, 0, 0.120, 0.98, 1, abc, 2.00, 0.00, 1, 1, 0, 0",    # non-numeric cell
        "5, 0, 0.160, 0.98, 1, , 2.00, 0.00, 1, 1, 0, 0"))      # empty cell
    track = read_openface_csv(path)
    assert track.valid.tolist() == [True, False, False, False, False]
    assert track.reasons == [None, NO_FACE, LOW_CONFIDENCE, BAD_VALUE, BAD_VALUE]
    assert track.input_string(0) == "AU01: 1.00, AU12: 2.00"
    assert read_openface_csv(path, min_confidence=0.5).valid.tolist() == [True, False, True, False, False]


def test_several_faces_pick_the_one_with_most_valid_frames(tmp_path, caplog):
    path = write(tmp_path, rows(
        "1, 0, 0.000, 0.98, 0, 0, 0, 0, 0, 0, 0, 0",
        "1, 1, 0.000, 0.98, 1, 1.5, 0, 0, 1, 0, 0, 0",
        "2, 0, 0.040, 0.98, 1, 0, 0, 0, 0, 0, 0, 0",
        "2, 1, 0.040, 0.98, 1, 1.6, 0, 0, 1, 0, 0, 0"))
    with caplog.at_level("INFO"):
        track = read_openface_csv(path)
    assert track.face_id == 1 and track.frames.tolist() == [1, 2]
    assert "using face_id 1" in caplog.text
    assert read_openface_csv(path, face_id=0).face_id == 0


def test_missing_success_and_confidence_columns_mean_valid(tmp_path):
    path = write(tmp_path, "frame,AU04_r,AU07_r\n1,1.2,0.3\n2,0.1,0.2\n")
    track = read_openface_csv(path)
    assert track.valid.all() and track.input_string(0) == "AU04: 1.20"


@pytest.mark.parametrize("text,match", [
    ("", "empty file"),
    (HEADER + "\n", "header only"),
    ("frame, face_id, success\n1, 0, 1\n", "no AU intensity columns"),
    ("frame, AU08_r\n1, 1.0\n", "unknown AU intensity columns"),
    ("frame, AU01_r\nx, 1.0\n", "line 2: the frame number is not a number"),
    ("frame, AU01_r\n1, 1.0\n2, 1.0, 3, 4\n", "not a readable CSV"),
])
def test_bad_files_raise_one_clear_error(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(AUAgentError, match=match) as e:
        read_openface_csv(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(AUAgentError, match="OpenFace CSV not found"):
        read_openface_csv(tmp_path / "nope.csv")


def test_row_dict_parsing():
    row = {"frame": 1, " AU01_r": "0.98", " AU01_c": 1.0, " AU25_r": 1.76, "confidence": 0.9}
    assert intensities_from_row(row) == {"AU01": 0.98, "AU25": 1.76}
    with pytest.raises(AUAgentError, match="unknown AU intensity column"):
        intensities_from_row({"AU08_r": 1.0})
    with pytest.raises(AUAgentError, match="non-numeric intensity"):
        intensities_from_row({"AU01_r": "x"})
    with pytest.raises(AUAgentError, match="non-finite intensity"):
        intensities_from_row({"AU01_r": float("nan")})
    with pytest.raises(AUAgentError, match="no AU intensity columns"):
        intensities_from_row({"frame": 1})
