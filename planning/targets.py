"""The hardware a plan compiles for: chips (one table of per-chip figures, each with the vendor page it came
from) and targets named as users name them: TPU slices by accelerator type (`v5e-8`, `v5p-64`, `v6e-256`;
`v4-N` and `v5p-N` count TensorCores, two a chip, `v5e-N` and `v6e-N` count chips) and GPU nodes (`h100-8`,
`h200-1`), several TPU slices with `slices`.

TPU devices come from libtpu (`pip install 'flaxforge[tpu-plan]'`), GPU devices from jax's CUDA plugin
(`flaxforge[gpu-plan]`) and an XLA GPU target config shipped in planning/gpu_targets/; neither needs the
hardware, and nothing here runs on it: the devices are for compiling only.
"""
import dataclasses
import os

from flaxforge.core.errors import UserError

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator chip. Rates are dense (no sparsity); bandwidths in bytes per second.

  `hbm_bytes` is the memory a program may use: for TPUs what the TPU compiler reports as available (its
  RESOURCE_EXHAUSTED message, libtpu 0.0.42.1), a little under the vendor's figure; for GPUs the target
  config's device_memory_size. `interconnect_bytes_per_s` is the chip's bidirectional ICI (TPU) or NVLink
  (GPU) bandwidth; collectives over data-centre networks between slices or nodes are slower.
  """
  name: str
  platform: str  # tpu | gpu
  hbm_bytes: int
  peak_bf16_flops: float
  hbm_bytes_per_s: float
  interconnect_bytes_per_s: float
  source: str  # the vendor page of the figures
  cores_per_chip: int = 1  # TensorCores a chip counts for in accelerator-type names
  topology: str = ""  # libtpu's generation name (TPU)
  chip_config: str = ""  # libtpu's chip configuration: "megacore" = one device of two TensorCores, as JAX uses v4
  target_config: str = ""  # XLA GPU target config in gpu_targets/ (GPU)
  peak_float32_flops: float = 0.0  # GPU: TF32 tensor cores, what float32 matmuls use at JAX's default precision


CHIPS = {
    "v4": Chip("v4", "tpu", int(30.75 * GiB), 275e12, 1200e9, 600e9, cores_per_chip=2, topology="v4",
               chip_config="megacore",
               source="https://cloud.google.com/tpu/docs/v4 (the page gives no ICI figure: 600 GB/s is its 6 links "
                      "of a 3D torus at the 50 GB/s each way that v5e's 4 links give its 400 GB/s)"),
    "v5e": Chip("v5e", "tpu", int(15.75 * GiB), 197e12, 819e9, 400e9, topology="v5e",
                source="https://cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("v5p", "tpu", int(95.74 * GiB), 459e12, 2765e9, 1200e9, cores_per_chip=2, topology="v5p",
                source="https://cloud.google.com/tpu/docs/v5p"),
    "v6e": Chip("v6e", "tpu", int(31.25 * GiB), 918e12, 1638e9, 800e9, topology="v6e",
                source="https://cloud.google.com/tpu/docs/v6e"),
    "h100": Chip("h100", "gpu", 84942979072, 989e12, 3.35e12, 900e9, peak_float32_flops=494.5e12,
                 target_config="h100_sxm.txtpb",
                 source="https://www.nvidia.com/en-us/data-center/h100/ (H100 SXM datasheet)"),
    "h200": Chip("h200", "gpu", 150754820096, 989e12, 4.8e12, 900e9, peak_float32_flops=494.5e12,
                 target_config="h200_sxm.txtpb",
                 source="https://www.nvidia.com/en-us/data-center/h200/ (H200 SXM datasheet)"),
}

# Slice shapes by chip count: 2D tori (v5e, v6e) and 3D (v4, v5p), as the vendor pages list them.
SHAPES_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
SHAPES_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8", 256: "4x8x8",
             512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"}
GPUS_PER_NODE = 8
GPU_COUNTS = (1, 2, 4, 8)  # one node; more nodes: a multiple of 8


@dataclasses.dataclass(frozen=True)
class Target:
  """`chips_per_slice` chips of `chip`, `slices` times (TPU multi-slice; GPU nodes are one slice)."""
  name: str
  chip: Chip
  chips_per_slice: int
  slices: int = 1

  @property
  def num_chips(self) -> int:
    return self.chips_per_slice * self.slices

  def describe(self) -> str:
    slices = f" x {self.slices} slices" if self.slices > 1 else ""
    return f"{self.name}{slices}: {self.num_chips} {self.chip.name} chips of {self.chip.hbm_bytes / GiB:.2f} GiB"

  def devices(self) -> list:
    """The target's compile-only devices (no hardware needed), in slice order."""
    environment()
    from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
    if self.chip.platform == "tpu":
      shape = (SHAPES_3D if self.chip.cores_per_chip == 2 else SHAPES_2D)[self.chips_per_slice]
      options = {"chip_config_name": self.chip.chip_config} if self.chip.chip_config else {}
      if self.chips_per_slice == 1:  # libtpu's default host is 2x2x1 chips
        options["chips_per_host_bounds"] = (1, 1, 1)
      return list(topologies.get_topology_desc(f"{self.chip.topology}:{shape}", "tpu", num_slices=self.slices,
                                               **options).devices)
    nodes, per_node = max(self.chips_per_slice // GPUS_PER_NODE, 1), min(self.chips_per_slice, GPUS_PER_NODE)
    try:
      return list(topologies.get_topology_desc(platform="cuda", topology=f"1x{nodes}x{per_node}",
                                               target_config=gpu_target_config(self.chip)).devices)
    except Exception as e:  # pylint: disable=broad-except  (no CUDA plugin: jax[cuda12] is not installed)
      raise UserError(f"planning for {self.name} needs jax's CUDA plugin (no GPU): pip install "
                      f"'flaxforge[gpu-plan]' ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


def gpu_target_config(chip: Chip) -> str:
  """The text of the chip's XLA GPU target config (xla/backends/gpu/target_config/specs layout)."""
  with open(os.path.join(os.path.dirname(__file__), "gpu_targets", chip.target_config), encoding="utf-8") as f:
    return f.read()


def known() -> str:
  """Every target name, one line: 'v5e-{1,4,8,...}, ..., h100-{1,2,4,8,16,...}'."""
  names = []
  for chip in CHIPS.values():
    if chip.platform == "tpu":
      counts = SHAPES_3D if chip.cores_per_chip == 2 else SHAPES_2D
      names.append(f"{chip.name}-{{{','.join(str(n * chip.cores_per_chip) for n in counts)}}}")
    else:
      names.append(f"{chip.name}-{{{','.join(str(n) for n in GPU_COUNTS)},16,24,...}}")
  return ", ".join(names)


def parse(name: str, slices: int = 1) -> Target:
  """A target by its accelerator-type name; UserError (one line listing the known ones) otherwise."""
  family, _, count = name.strip().lower().partition("-")
  chip = CHIPS.get(family)
  if chip is None or not count.isdigit():
    raise UserError(f"unknown target {name!r}; known targets: {known()} (--slices=N for several TPU slices)")
  if slices < 1:
    raise UserError(f"--slices={slices}: give 1 or more TPU slices")
  count = int(count)
  if chip.platform == "gpu":
    if count not in GPU_COUNTS and count % GPUS_PER_NODE:
      raise UserError(f"{name}: a GPU target has 1, 2, 4 or 8 GPUs, or a multiple of 8 (nodes of 8); known "
                      f"targets: {known()}")
    if slices != 1:
      raise UserError(f"--slices is for TPU targets; name a GPU count across nodes instead, e.g. {family}-16")
    return Target(name, chip, count)
  shapes = SHAPES_3D if chip.cores_per_chip == 2 else SHAPES_2D
  if count % chip.cores_per_chip or count // chip.cores_per_chip not in shapes:
    unit = "TensorCores (2 a chip)" if chip.cores_per_chip == 2 else "chips"
    raise UserError(f"unknown target {name!r}: {family}-N counts {unit}; known targets: {known()}")
  return Target(name, chip, count // chip.cores_per_chip, slices)


def environment() -> None:
  """Before JAX starts: the host's CPU is the only backend (compile-only devices need no other); libtpu
  neither asks the cloud metadata server nor looks for TPU hosts (it takes this one as a single host, which
  silences its warnings and leaves the compile-only topologies as they are), and several processes may load
  it at once (nothing touches a TPU)."""
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("TPU_HOST_BOUNDS", "1,1,1")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
