"""Face analysis: MediaPipe detector + 468-point face mesh (.tflite) run by OpenVINO.

API: ``FaceAnalyzer(cfg=cfg, store=store).analyze(image_bgr) -> FaceLandmarks`` with
``.points`` (468, 3) image pixels, ``.box`` (x1, y1, x2, y2) pixels, ``.score``,
``.inter_ocular``, ``.mouth_aperture()`` and ``.lower_face_box()``; ``load_avatar`` in
``face.avatar`` reads the portrait (or a short video); ``track_faces(analyzer, frames)`` in
``face.track`` gives smoothed landmarks per frame of a video avatar (the viseme engine's
``prepare`` takes the (T, H, W, 3) frames directly and plays them as a loop).
"""
