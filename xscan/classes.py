"""The two classes the model tells apart, by name; a label's index is its number (1 is the positive class)."""

CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # 0 normal, 1 pneumonia
NEGATIVE, POSITIVE = CLASS_NAMES
