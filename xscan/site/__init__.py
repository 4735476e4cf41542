"""A site's own use of the model: calibrating its threshold on labelled local scans."""
