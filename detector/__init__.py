"""RetinaNet and the focal loss: model, losses, data, training, evaluation.

Imports only torch, torchvision, pycocotools, numpy and PIL; knows nothing of
Hydra, Ray, Optuna or MLflow (see docs/ARCHITECTURE.md).
"""
