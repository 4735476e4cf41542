"""Where the model looked: Grad-CAM and the overlays drawn from it."""
