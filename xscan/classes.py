"""The two classes the model tells apart, by name; a label's index is its number (1 is the positive class)."""

CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # 0 normal, 1 pneumonia
NEGATIVE, POSITIVE = CLASS_NAMES
OUT_OF_SCOPE = "OUT_OF_SCOPE"  # the label of a scan the model was not built for: neither class
