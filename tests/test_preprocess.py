"""Raw input → model input: whatever numeric type and channels users have, or one clear line."""

import numpy as np
import pytest

from stages import prepare, preprocess
from stages.errors import PipelineError
from stages.preprocess import raw_from_prepared, to_model_input
from tests.conftest import tiny_cases, write_ts_pair


def image_meta(channels: int) -> dict:
    return {
        "kind": "image",
        "input_shape": [channels, 8, 8],
        "channels": channels,
        "normalization": {"scale": 1 / 255.0, "mean": [0.4] * channels, "std": [0.3] * channels},
    }


SEQUENCE_META = {
    "kind": "sequence",
    "channels": 2,
    "normalization": {"mean": [1.0, -1.0], "std": [2.0, 0.5]},
}
PIXELS = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8)).astype(np.uint8)
COLOUR = np.repeat(PIXELS[..., None], 3, axis=-1)  # grey pixels as RGB: the same picture


@pytest.mark.parametrize(
    "raw",
    [
        PIXELS,  # uint8, as np.asarray(PIL image) gives them
        PIXELS.astype(np.float32),
        PIXELS.astype(np.int64).tolist(),  # JSON numbers
        PIXELS[..., None],  # (N, H, W, 1)
        COLOUR,  # colour to a grey model
        np.concatenate([PIXELS[..., None], np.full_like(PIXELS[..., None], 255)], -1),  # LA
        np.concatenate([COLOUR, np.full_like(PIXELS[..., None], 255)], -1),  # RGBA
    ],
)
def test_grey_model_takes_pixels_as_users_have_them(raw):
    expected = to_model_input(PIXELS.astype(np.float64), image_meta(1))[0]
    np.testing.assert_array_equal(to_model_input(raw, image_meta(1))[0], expected)


@pytest.mark.parametrize("raw", [PIXELS, PIXELS[..., None], COLOUR.astype(np.int32)])
def test_colour_model_takes_grey_and_colour(raw):
    expected = to_model_input(COLOUR.astype(np.float64), image_meta(3))[0]
    np.testing.assert_array_equal(to_model_input(raw, image_meta(3))[0], expected)


@pytest.mark.parametrize("dtype", [np.int16, np.int64, np.float32])
def test_series_of_any_numeric_type(dtype):
    series = np.random.default_rng(1).integers(-50, 50, size=(4, 6, 2))
    x, lengths = to_model_input(series.astype(dtype), SEQUENCE_META)
    expected, _ = to_model_input(series.astype(np.float64), SEQUENCE_META)
    np.testing.assert_allclose(x, expected)
    assert lengths.tolist() == [6] * 4


@pytest.mark.parametrize(
    ("raw", "meta", "message"),
    [
        (PIXELS * 300.0, image_meta(1), r"must lie in 0\.\.255; got 0\.\.76500"),
        (np.full((1, 8, 8), np.nan), image_meta(1), "got NaN or infinity"),
        (
            np.zeros((1, 8, 8, 5)),
            image_meta(3),
            r"C 1 to 4 .* got \(1, 8, 8, 5\) \(the model converts them to 8×8 with 3 channel",
        ),
        (np.zeros((1, 5, 3)), SEQUENCE_META, r"sequences must have shape \(N, T, 2\)"),
        (
            np.full((40, 3, 2), np.nan),
            SEQUENCE_META,
            r"series \[0, 1, .*, 9, \.\.\. \(40 in all\)\]",
        ),
    ],
)
def test_bad_input_is_one_line_that_does_not_quote_it(raw, meta, message):
    with pytest.raises(PipelineError, match=message) as info:
        to_model_input(raw, meta)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_too_many_values_per_call(monkeypatch):
    monkeypatch.setattr(preprocess, "MAX_INPUT_VALUES", 192)
    to_model_input(PIXELS, image_meta(1))  # 3 × 8 × 8 values
    monkeypatch.setattr(preprocess, "MAX_INPUT_VALUES", 191)
    with pytest.raises(PipelineError, match="input has 192 values; at most 191 per call"):
        to_model_input(PIXELS, image_meta(1))


@pytest.mark.parametrize("normalize", ["dataset", "series"])
def test_served_input_matches_prepare(make_params, tmp_path, normalize):
    """The raw test split, as a user would send it, becomes exactly what `prepare` wrote."""
    folder = write_ts_pair(tmp_path / "seqs", tiny_cases(8), tiny_cases(4, seed=1))
    ds = {"source": "ts", "path": str(folder), "sequence": {"normalize": normalize}}
    meta = prepare.run("mine", make_params({"mine": ds}).datasets["mine"], tmp_path / "out")
    raw = raw_from_prepared(tmp_path / "out", meta)
    assert np.isnan(raw).any()  # series of several lengths, NaN after each end
    x, lengths = to_model_input(raw, meta)
    np.testing.assert_allclose(x, np.load(tmp_path / "out" / "x_test.npy"), atol=1e-5)
    assert lengths.tolist() == np.load(tmp_path / "out" / "len_test.npy").tolist()


def test_per_series_model_sees_shape_apart_from_level_and_scale():
    per_series = {"per_series": True, "mean": [0.0] * 6, "std": [1.0] * 6}
    meta = SEQUENCE_META | {"normalization": per_series}
    series = np.random.default_rng(2).normal(size=(3, 6, 2))
    series[0, 4:] = np.nan  # a shorter series
    x, lengths = to_model_input(series, meta)
    assert x.shape == (3, 6, 6) and lengths.tolist() == [4, 6, 6] and not x[0, 4:].any()
    scale, level = np.array([[[10.0]], [[0.5]], [[3.0]]]), np.array([[[4.0, -2.0]]])
    moved, _ = to_model_input(series * scale + level, meta)
    np.testing.assert_allclose(moved[..., :2], x[..., :2], atol=1e-5)  # the same shapes
    # meta's statistics are 0 and 1 here: the level and log-scale channels are the raw ones.
    np.testing.assert_allclose(moved[1, 0, 2:4], 0.5 * x[1, 0, 2:4] + [4.0, -2.0], atol=1e-5)
    np.testing.assert_allclose(moved[1, 0, 4:] - x[1, 0, 4:], np.log(0.5), atol=1e-5)
    steady = np.ones((1, 5, 2))  # a constant series is centred, not divided by zero
    assert np.isfinite(to_model_input(steady, meta)[0]).all()
