"""The sizes a scan file must stay within, whatever its format: checked before any decoder allocates."""

# Smaller than this on either side is not a radiograph (a thumbnail or an icon).
MIN_SIDE = 64
# An image (or DICOM frame) of more pixels than this is refused from its header: the largest
# radiograph detectors have about 18 megapixels (43 x 43 cm at 100 micrometres), while a
# decompression bomb claims billions.
MAX_PIXELS = 100_000_000
# A DICOM frame (Rows x Columns x SamplesPerPixel x BitsAllocated) larger than this is refused
# from its header: 100 megapixels of 16 bits, the largest grey frame MAX_PIXELS lets through.
MAX_FRAME_BYTES = 2 * MAX_PIXELS
# A file larger than this is not read at all (a 100-megapixel 16-bit uncompressed TIFF is 200 MB).
MAX_FILE_BYTES = 1 << 30
