"""Results where a hospital reads them: one verdict per study, DICOM Structured Reports, and sending them to a PACS."""
