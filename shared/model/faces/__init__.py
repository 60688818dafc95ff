"""Face detection: RetinaFace on torch (ResNet50, MobileNet0.25) and the OpenCV Haar fallback.

Importing this package loads neither torch nor OpenCV; the detectors import them when built.
"""
from shared.model.faces.detector import FaceDetector, build_face_detector, default_backbone

__all__ = ["FaceDetector", "build_face_detector", "default_backbone"]
