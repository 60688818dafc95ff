import pytest

from shared.errors import InvalidOptionsError
from shared.options import AnalysisOptions


def test_form_strings_are_coerced():
    options = AnalysisOptions.from_mapping({"sequence_length": "20", "threshold": "0.4", "face_detector": "none",
                                            "precision": "", "weights": None})
    assert options.sequence_length == 20 and options.threshold == 0.4 and options.face_detector == "none"
    assert options.precision == "auto"


@pytest.mark.parametrize("data, message", [
    ({"frame_stride": "0"}, "frame_stride"),
    ({"batch_size": "lots"}, "batch_size must be an integer"),
    ({"precision": "fp8"}, "precision must be one of"),
    ({"threshold": "1.5"}, "threshold"),
    ({"sequence_length": 2.5}, "sequence_length"),
    ({"colour": "red"}, "unknown option"),
    ({"weights": "../../etc/passwd"}, "not a path"),
    ({"weights": "/abs/model.pt"}, "not a path"),
    ({"sequence_length": "1_0"}, "sequence_length must be an integer"),
    ({"sequence_length": "\u0663"}, "sequence_length must be an integer"),
    ({"sequence_length": "\uff11\uff10"}, "sequence_length must be an integer"),
    ({"threshold": "0_5"}, "threshold must be a number"),
    ({"threshold": "\u0660.5"}, "threshold must be a number"),
    ({"threshold": "nan"}, "threshold must be a number"),
    ({"crop_margin": "inf"}, "crop_margin must be a number"),
])
def test_bad_values_name_the_option(data, message):
    with pytest.raises(InvalidOptionsError, match=message) as error:
        AnalysisOptions.from_mapping(data)
    assert error.value.code == "invalid_options"


def test_ascii_decimals_with_sign_and_fraction_are_read():
    options = AnalysisOptions.from_mapping({"sequence_length": " +12 ", "threshold": ".25", "crop_margin": "1."})
    assert (options.sequence_length, options.threshold, options.crop_margin) == (12, 0.25, 1.0)


def test_paths_are_allowed_for_the_cli():
    assert AnalysisOptions.from_mapping({"weights": "/tmp/x.pt"}, allow_paths=True).weights == "/tmp/x.pt"


def test_round_trip_through_a_dict():
    options = AnalysisOptions(sequence_length=10, face_detector="opencv")
    assert AnalysisOptions.from_mapping(options.to_dict()) == options
