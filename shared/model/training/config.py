"""The options of one training run, stored in its state so `--resume` continues the same run."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from shared.model.networks import BACKBONES
from shared.model.training.data import TRAIN_SAMPLINGS
from shared.errors import InvalidOptionsError

BALANCING = ("loss", "sampler", "none")
# Options a resumed run may change; everything else must stay as the run started.
RESUMABLE_OVERRIDES = ("epochs", "patience", "workers", "device")


@dataclass(frozen=True)
class TrainConfig:
    """Every option of `deepfake train` (paths as strings so the state stays primitive)."""

    manifest: str
    out: str
    backbone: str = "resnext50_32x4d"
    hidden_size: int = 512
    sequence_length: int = 20
    input_size: int = 112
    sampling: str = "random"
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-4
    epochs: int = 20
    patience: int = 5
    val_fraction: float = 0.2
    seed: int = 0
    balance: str = "loss"
    augment: bool = True
    amp: bool = True
    device: str = "auto"
    workers: int = 2
    backbone_weights: str | None = None
    init: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        _choice("backbone", self.backbone, BACKBONES)
        _choice("sampling", self.sampling, TRAIN_SAMPLINGS)
        _choice("balance", self.balance, BALANCING)
        for name in ("hidden_size", "sequence_length", "input_size", "batch_size", "epochs", "patience"):
            if getattr(self, name) < 1:
                raise InvalidOptionsError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.workers < 0:
            raise InvalidOptionsError("learning rate must be positive and workers non-negative")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def resumed_with(self, new: "TrainConfig") -> "TrainConfig":
        """This (saved) config with the options a resumed run may change taken from `new`."""
        return replace(self, **{name: getattr(new, name) for name in RESUMABLE_OVERRIDES})


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidOptionsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
