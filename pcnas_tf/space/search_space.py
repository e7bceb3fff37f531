"""Search-space specs: the macro skeleton and the operator choices of each mixop.

A `SearchSpace` is an immutable description of a supergraph (paper section 3.2, appendix A.1): a fixed stem,
L searchable layers (mixops), each with its output channels, stride and the operators it may choose, and a
fixed head. An architecture is data: a tuple with one operator name per mixop.

Spaces:
  * `small`: 21 mixops x 10 operators (Table 4, left column) on the ProxylessNAS skeleton.
  * `large`: the same 21 mixops x 20 operators (adds Table 4's right column).
  * `macro`: NAS-Bench-Macro's 8 layers x {Identity, MBConv_3_3, MBConv_6_5} (CIFAR-sized, CPU demos).
"""

import dataclasses
import hashlib
import json
import re
from typing import Sequence

from pcnas_tf import errors
from pcnas_tf import files

Architecture = tuple[str, ...]

# Operator names: OP_X_K, X the expand ratio and K the kernel size (A.1), plus Identity.
_OP_PATTERN = re.compile(r"^(MBConv|NConv|DConv|RConv)_(\d+)_(\d+)$")
IDENTITY = "Identity"
ACTIVATIONS = ("relu", "relu6")
# Compact arch strings use one character per mixop: the index of its operator in that layer's choices.
_INDEX_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"

SMALL_OPS = ("MBConv_1_3", "MBConv_3_3", "MBConv_6_3", "MBConv_1_5", "MBConv_3_5", "MBConv_6_5",
             "MBConv_1_7", "MBConv_3_7", "MBConv_6_7", IDENTITY)
LARGE_ONLY_OPS = ("NConv_1_3", "NConv_2_3", "DConv_1_3", "DConv_2_3", "RConv_1_5", "RConv_2_5",
                  "RConv_4_5", "RConv_1_7", "RConv_2_7", "RConv_4_7")
LARGE_OPS = SMALL_OPS + LARGE_ONLY_OPS
# Order matches NAS-Bench-Macro's digits 0, 1, 2, so compact strings are that table's keys.
MACRO_OPS = (IDENTITY, "MBConv_3_3", "MBConv_6_5")

# ProxylessNAS stages: (channels, layers, stride of the first layer).
_PROXYLESS_STAGES = ((24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))
_MACRO_STAGES = ((64, 2, 2), (128, 3, 2), (256, 3, 2))


class SpaceError(errors.UserError):
  """A search space, or an architecture in it, is not valid."""


@dataclasses.dataclass(frozen=True)
class OpSpec:
  """One parsed operator name: family (MBConv, NConv, DConv, RConv, Identity), expand ratio, kernel."""
  family: str
  expand: int = 1
  kernel: int = 1


def parse_op(name: str) -> OpSpec:
  """Parses an operator name such as `MBConv_6_3` or `Identity`."""
  if name == IDENTITY:
    return OpSpec(IDENTITY)
  match = _OP_PATTERN.match(name)
  if not match:
    raise SpaceError(
        f"Unknown operator {name!r}; allowed: Identity or MBConv/NConv/DConv/RConv_<expand>_<kernel>, "
        f"e.g. MBConv_6_3.")
  family, expand, kernel = match.group(1), int(match.group(2)), int(match.group(3))
  if expand < 1 or kernel < 1 or kernel % 2 == 0:
    raise SpaceError(f"Operator {name!r} needs expand >= 1 and an odd kernel >= 1.")
  return OpSpec(family, expand, kernel)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One mixop: its output channels, the stride of its operators, and the operators to choose from."""
  channels: int
  stride: int
  choices: tuple[str, ...]

  def validate(self, index: int) -> None:
    if not self.choices:
      raise SpaceError(f"Layer {index} has an empty choice list; give it at least one operator.")
    if len(set(self.choices)) != len(self.choices):
      raise SpaceError(f"Layer {index} lists an operator twice: {list(self.choices)}.")
    if len(self.choices) > len(_INDEX_CHARS):
      raise SpaceError(f"Layer {index} has {len(self.choices)} choices; at most {len(_INDEX_CHARS)}.")
    if self.stride not in (1, 2):
      raise SpaceError(f"Layer {index} has stride {self.stride}; allowed strides are 1 and 2.")
    if self.channels < 1:
      raise SpaceError(f"Layer {index} has {self.channels} channels; it needs at least 1.")
    for op in self.choices:
      parse_op(op)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """An immutable supergraph spec.

  Attributes:
    name: short name, recorded in results and latency tables.
    stem_channels, stem_stride: the fixed 3x3 conv + BN + activation at the input.
    first_op: an optional fixed operator after the stem (ProxylessNAS' MBConv_1_3 to 16 channels), as
      `(op_name, channels)`, or None.
    layers: the searchable mixops, in order.
    head_channels: the fixed 1x1 conv before global pooling; 0 for none.
    activation: `relu` or `relu6`, used by every operator, the stem and the head.
    width: the width multiplier the channels were scaled with (recorded, already applied).
  """
  name: str
  stem_channels: int
  stem_stride: int
  first_op: tuple[str, int] | None
  layers: tuple[LayerSpec, ...]
  head_channels: int
  activation: str
  width: float = 1.0

  def __post_init__(self):
    if not self.layers:
      raise SpaceError(f"Space {self.name!r} has no searchable layers.")
    if self.activation not in ACTIVATIONS:
      raise SpaceError(f"Activation {self.activation!r} is unknown; allowed: {', '.join(ACTIVATIONS)}.")
    if self.stem_stride not in (1, 2):
      raise SpaceError(f"Stem stride {self.stem_stride} is not allowed; allowed strides are 1 and 2.")
    for index, layer in enumerate(self.layers):
      layer.validate(index)
    if self.first_op is not None:
      parse_op(self.first_op[0])

  @property
  def num_layers(self) -> int:
    return len(self.layers)

  @property
  def total_stride(self) -> int:
    """The product of all strides: inputs must be at least this large on each side."""
    stride = self.stem_stride
    for layer in self.layers:
      stride *= layer.stride
    return stride

  def size(self) -> int:
    """The number of architectures in the space."""
    count = 1
    for layer in self.layers:
      count *= len(layer.choices)
    return count

  def layer_input_channels(self) -> list[int]:
    """The input channels of each mixop."""
    channels = [self.first_op[1] if self.first_op else self.stem_channels]
    channels += [layer.channels for layer in self.layers[:-1]]
    return channels

  # Architectures ------------------------------------------------------------------------------------

  def validate_arch(self, arch: Sequence[str]) -> Architecture:
    """Returns `arch` as a tuple after checking its length and that each op is allowed at its layer."""
    arch = tuple(arch)
    if len(arch) != self.num_layers:
      raise SpaceError(
          f"Architecture has {len(arch)} operators; space {self.name!r} has {self.num_layers} layers.")
    for index, (op, layer) in enumerate(zip(arch, self.layers)):
      if op not in layer.choices:
        raise SpaceError(f"Operator {op!r} is not allowed at layer {index}; allowed: "
                         f"{', '.join(layer.choices)}.")
    return arch

  def indices(self, arch: Sequence[str]) -> tuple[int, ...]:
    """The path of `arch`: the index of its operator within each layer's choices."""
    arch = self.validate_arch(arch)
    return tuple(layer.choices.index(op) for op, layer in zip(arch, self.layers))

  def arch_from_indices(self, indices: Sequence[int]) -> Architecture:
    if len(indices) != self.num_layers:
      raise SpaceError(f"Path has {len(indices)} entries; space {self.name!r} has {self.num_layers}.")
    arch = []
    for index, (choice, layer) in enumerate(zip(indices, self.layers)):
      if not 0 <= int(choice) < len(layer.choices):
        raise SpaceError(f"Choice {choice} at layer {index} is out of range 0..{len(layer.choices) - 1}.")
      arch.append(layer.choices[int(choice)])
    return tuple(arch)

  def arch_to_string(self, arch: Sequence[str]) -> str:
    """The compact form: one character (the choice index, base 36) per layer, e.g. `01221020`."""
    return path_to_string(self.indices(arch))

  def parse_arch(self, text: str) -> Architecture:
    """Parses a compact string, or a comma-separated list of op names, into an architecture."""
    text = text.strip()
    if "," in text or (self.num_layers == 1 and not text.isalnum()):
      return self.validate_arch(op.strip() for op in text.split(","))
    if len(text) != self.num_layers:
      raise SpaceError(f"Architecture string {text!r} has {len(text)} characters; space {self.name!r} "
                       f"needs {self.num_layers}, one per layer.")
    indices = []
    for index, char in enumerate(text.lower()):
      position = _INDEX_CHARS.find(char)
      if position < 0 or position >= len(self.layers[index].choices):
        raise SpaceError(f"Character {char!r} at layer {index} is not a valid choice; allowed: 0.."
                         f"{_INDEX_CHARS[len(self.layers[index].choices) - 1]} "
                         f"({', '.join(self.layers[index].choices)}).")
      indices.append(position)
    return self.arch_from_indices(indices)

  # Serialisation ------------------------------------------------------------------------------------

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: dict) -> "SearchSpace":
    try:
      layers = tuple(LayerSpec(int(l["channels"]), int(l["stride"]), tuple(l["choices"]))
                     for l in data["layers"])
      first_op = tuple(data["first_op"]) if data.get("first_op") else None
      return cls(name=data["name"], stem_channels=int(data["stem_channels"]),
                 stem_stride=int(data["stem_stride"]), first_op=first_op, layers=layers,
                 head_channels=int(data["head_channels"]), activation=data["activation"],
                 width=float(data.get("width", 1.0)))
    except (KeyError, TypeError) as error:
      raise SpaceError(f"Search-space JSON is missing or has a malformed field: {error}.") from error

  def fingerprint(self) -> str:
    """A short hash of everything that shapes the network, for caches and checkpoints."""
    blob = json.dumps(self.to_json(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def path_to_string(path: Sequence[int]) -> str:
  """The compact form of a path of choice indices, whole or partial (a pool member's: `012`)."""
  return "".join(_INDEX_CHARS[int(choice)] for choice in path)


def make_divisible(value: float, divisor: int = 8) -> int:
  """Rounds channels to a multiple of `divisor`, never below 90% of `value` (MobileNet's rule)."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


def _staged_layers(stages, choices, width):
  layers = []
  for channels, count, stride in stages:
    for position in range(count):
      layers.append(LayerSpec(make_divisible(channels * width), stride if position == 0 else 1,
                              tuple(choices)))
  return tuple(layers)


def _proxyless_space(name: str, choices: Sequence[str], width: float) -> SearchSpace:
  return SearchSpace(
      name=name, stem_channels=make_divisible(32 * width), stem_stride=2,
      first_op=("MBConv_1_3", make_divisible(16 * width)),
      layers=_staged_layers(_PROXYLESS_STAGES, choices, width),
      head_channels=make_divisible(1280 * max(1.0, width)), activation="relu6", width=width)


def small_space(width: float = 1.0) -> SearchSpace:
  """PC-NAS' small space: 21 mixops x 10 operators, 10^21 architectures."""
  return _proxyless_space("small", SMALL_OPS, width)


def large_space(width: float = 1.0) -> SearchSpace:
  """PC-NAS' large space: 21 mixops x 20 operators, 20^21 architectures."""
  return _proxyless_space("large", LARGE_OPS, width)


def macro_space(width: float = 1.0) -> SearchSpace:
  """NAS-Bench-Macro's space: 8 layers x 3 operators, 3^8 = 6,561 architectures."""
  return SearchSpace(
      name="macro", stem_channels=make_divisible(32 * width), stem_stride=1, first_op=None,
      layers=_staged_layers(_MACRO_STAGES, MACRO_OPS, width),
      head_channels=make_divisible(1280 * width), activation="relu", width=width)


SPACES = {"small": small_space, "large": large_space, "macro": macro_space}


def spec_text(space: SearchSpace) -> str:
  """`space` as one line of JSON, which `get_space` reads back: a config's `space` for a user's space."""
  return json.dumps(space.to_json(), sort_keys=True, separators=(",", ":"))


def get_space(name: str, width: float = 1.0) -> SearchSpace:
  """Returns a built-in space by name, or a user's space from a JSON file path or JSON text (`spec_text`).

  The width applies to built-in spaces; a user's spec holds its channels as they are.
  """
  if not width > 0:  # NaN too
    raise SpaceError(f"Width multiplier {width} must be > 0.")
  if name in SPACES:
    return SPACES[name](width)
  if name.lstrip().startswith("{"):
    try:
      return SearchSpace.from_json(json.loads(name))
    except json.JSONDecodeError as error:
      raise SpaceError(f"Search-space JSON is not valid JSON: {error}.") from error
  if name.endswith(".json"):
    try:
      with files.open_file(name) as f:
        return SearchSpace.from_json(json.load(f))
    except OSError as error:
      raise SpaceError(f"Cannot read search-space file {name!r}: {error.strerror}.") from error
    except json.JSONDecodeError as error:
      raise SpaceError(f"Search-space file {name!r} is not valid JSON: {error}.") from error
  raise SpaceError(f"Unknown search space {name!r}; allowed: {', '.join(SPACES)}, a .json spec file or "
                   f"JSON text.")
