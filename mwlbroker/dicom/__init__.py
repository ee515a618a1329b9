"""The DICOM edge: the AE and its listener, the C-FIND and C-ECHO handlers, identifier reading."""
