"""DICOM: the header policy, tags as columns, and a viewer's rendering of the first frame."""
