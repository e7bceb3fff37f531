"""Tests of search-space specs and architectures as data."""

import json

import pytest

from pcnas_tf.space import search_space as space_lib


def test_paper_space_sizes():
  small, large = space_lib.small_space(), space_lib.large_space()
  assert small.num_layers == large.num_layers == 21
  assert small.size() == 10**21 and large.size() == 20**21
  assert space_lib.macro_space().size() == 3**8


def test_proxyless_skeleton_channels_and_strides():
  small = space_lib.small_space()
  assert [layer.channels for layer in small.layers] == [24] * 4 + [40] * 4 + [80] * 4 + [96] * 4 + [192] * 4 + [320]
  assert [i for i, layer in enumerate(small.layers) if layer.stride == 2] == [0, 4, 8, 16]
  assert small.total_stride == 32 and space_lib.macro_space().total_stride == 8
  assert small.layer_input_channels()[0] == 16


def test_width_multiplier_scales_channels_to_multiples_of_8():
  narrow = space_lib.small_space(0.5)
  assert all(layer.channels % 8 == 0 for layer in narrow.layers)
  assert narrow.layers[-1].channels == 160


@pytest.mark.parametrize("name", ["small", "large", "macro"])
def test_json_round_trip(name, tmp_path):
  space = space_lib.get_space(name, 0.5)
  path = tmp_path / "space.json"
  path.write_text(json.dumps(space.to_json()))
  loaded = space_lib.get_space(str(path))
  assert loaded == space and loaded.fingerprint() == space.fingerprint()
  assert space_lib.get_space(space_lib.spec_text(space)) == space  # a config's `space` as JSON text


def test_json_text_that_is_not_json_is_a_clear_error():
  with pytest.raises(space_lib.SpaceError, match="^Search-space JSON is not valid JSON: "):
    space_lib.get_space('{"name": "x",')


def test_fingerprint_differs_between_spaces_and_widths():
  prints = {space_lib.get_space(n, w).fingerprint() for n in ("small", "large") for w in (0.5, 1.0)}
  assert len(prints) == 4


def test_arch_string_round_trip_matches_nas_bench_macro_keys():
  space = space_lib.macro_space()
  arch = space.parse_arch("01221020")
  assert arch[:3] == ("Identity", "MBConv_3_3", "MBConv_6_5")
  assert space.arch_to_string(arch) == "01221020"
  large = space_lib.large_space()
  arch = tuple(layer.choices[(i * 7) % 20] for i, layer in enumerate(large.layers))
  assert large.parse_arch(large.arch_to_string(arch)) == arch
  assert large.parse_arch(",".join(arch)) == arch


def test_arch_errors_name_the_layer_and_allowed_ops():
  space = space_lib.macro_space()
  with pytest.raises(space_lib.SpaceError, match="has 3 characters.*needs 8"):
    space.parse_arch("012")
  with pytest.raises(space_lib.SpaceError, match="layer 2.*Identity, MBConv_3_3, MBConv_6_5"):
    space.validate_arch(("Identity", "Identity", "NConv_1_3") + ("Identity",) * 5)
  with pytest.raises(space_lib.SpaceError, match="Character '7' at layer 1"):
    space.parse_arch("07000000")


@pytest.mark.parametrize("layer, message", [
    (space_lib.LayerSpec(8, 1, ("Conv_3",)), "Unknown operator 'Conv_3'"),
    (space_lib.LayerSpec(8, 1, ()), "empty choice list"),
    (space_lib.LayerSpec(8, 3, ("Identity",)), "stride 3"),
    (space_lib.LayerSpec(8, 1, ("MBConv_3_4",)), "odd kernel"),
])
def test_user_space_validates_itself(layer, message):
  with pytest.raises(space_lib.SpaceError, match=message):
    space_lib.SearchSpace("mine", 8, 1, None, (layer,), 0, "relu")


def test_unknown_space_name_is_a_clear_error():
  with pytest.raises(space_lib.SpaceError, match="Unknown search space 'tiny'; allowed: small, large, macro"):
    space_lib.get_space("tiny")
