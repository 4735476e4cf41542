"""`xscan listen`: a DICOM node that receives studies, scores each once it is complete and sends the reports back."""
