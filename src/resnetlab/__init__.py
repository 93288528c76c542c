"""resnetlab: the networks of He et al. 2015, "Deep Residual Learning for Image Recognition",
weight-compatible with torchvision and timm."""

from .host import keep_freed_memory
from .inference import export_onnx, optimize_for_inference
from .model import BasicBlock, Bottleneck, ResNet, ResNetConfig
from .summary import Summary, summary
from .trainer import TrainResult, train
from .weights import export_state_dict, load_pretrained
from .zoo import create_model, get_config, list_models

__version__ = "0.1.0"

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResNetConfig",
    "Summary",
    "TrainResult",
    "create_model",
    "export_onnx",
    "export_state_dict",
    "get_config",
    "keep_freed_memory",
    "list_models",
    "load_pretrained",
    "optimize_for_inference",
    "summary",
    "train",
]
