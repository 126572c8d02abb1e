"""camera-worker: consumes camera_analysis: analyse frames, detect motion, capture periodically."""
