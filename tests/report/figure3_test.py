"""Tests of the Figure 3 drawing: the blocks' shapes follow the operators, and the picture is written."""

import pytest
from matplotlib import image as mpimg

from pcnas_tf.report import figure3
from pcnas_tf.space import search_space as space_lib
from tests import helpers as testing


def test_width_grows_with_the_kernel_and_height_with_the_expansion():
  size = lambda name: figure3.block_size(space_lib.parse_op(name))
  assert size("MBConv_3_3")[0] < size("MBConv_3_5")[0] < size("MBConv_3_7")[0]
  assert size("MBConv_1_5")[1] < size("MBConv_3_5")[1] < size("MBConv_6_5")[1]
  assert size("MBConv_6_3")[0] == size("MBConv_1_3")[0] and size("MBConv_6_3")[1] == size("MBConv_6_7")[1]
  identity = space_lib.parse_op("Identity")
  assert figure3.block_size(identity)[0] < figure3.block_size(identity, projection=True)[0]


def test_an_identity_projects_where_the_stride_or_the_channels_change():
  space = testing.tiny_space()  # 8 -> 8 channels, then 8 -> 16 with stride 2, then 16 -> 16
  assert [figure3.projects(space, index) for index in range(3)] == [False, True, False]
  assert figure3.block_label(space_lib.parse_op("Identity"), projection=True) == "1x1\nproj"
  assert figure3.block_label(space_lib.parse_op("MBConv_6_5")) == "MB6\n5x5"


def test_larger_kernels_are_darker():
  lightness = lambda name: sum(int(figure3.block_colour(space_lib.parse_op(name))[i:i + 2], 16)
                               for i in (1, 3, 5))
  assert lightness("MBConv_3_3") > lightness("MBConv_3_5") > lightness("MBConv_3_7")


@pytest.mark.parametrize("space", [testing.tiny_space(), space_lib.small_space()], ids=["tiny", "small"])
def test_the_drawing_is_a_picture_wider_for_more_layers(space, tmp_path):
  arch = space.arch_from_indices([1] * space.num_layers)
  path = str(tmp_path / "arch.png")
  figure3.draw_architecture(space, arch, (32, 32, 3), path)
  height, width = mpimg.imread(path).shape[:2]
  assert width > height and width >= (2000 if space.num_layers > 10 else 800)
