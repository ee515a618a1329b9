"""mwlbroker: a Modality Worklist broker and HL7 v2 integration engine for radiology."""

__version__ = "0.1.0"
